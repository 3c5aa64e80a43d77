"""vm.max_map_count: the POSIX model against the kernel at the limit (docs/VM_SEMANTICS.md B.2).

Every mapping of the process counts, so the check runs in a child process: it fills most
of the budget with a region of its own split page by page (outside the model), seeds the
model with the VMA count /proc/self/maps then shows, and drives both the model and the
kernel across the limit on a second region, comparing every answer and the count after
every call. The child uses glibc malloc without mmap, so Python's own allocations grow the
heap instead of adding VMAs while the count is being compared.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from arenacheck.model.posix_constants import EAGAIN, ENOMEM

HOLE_PROT = 3  # PROT_READ | PROT_WRITE: differs from the PROT_NONE around it, never merges
MARGIN = 11  # VMAs left below the limit when the model takes over (odd: exercises both parities)


def _child() -> None:
    """Run the scenario; print one JSON line per call: what, kernel, model, counts."""
    from arenacheck.impl.posix_libc import Libc
    from arenacheck.model.posix_constants import (
        LINUX,
        MADV_DONTDUMP,
        MAP_FIXED,
        MAP_PRIVATE,
        PROT_NONE,
        PROT_READ,
    )
    from arenacheck.model.posix_vm import MAP_FAILED, PosixVM

    libc = Libc()
    page = libc.page
    buf = bytearray(64 << 20)

    def kernel_count() -> int:
        """mm->map_count: lines of /proc/self/maps, less x86_64's [vsyscall] (not a VMA)."""
        fd = os.open("/proc/self/maps", os.O_RDONLY)
        total = 0
        try:
            while True:
                n = os.readv(fd, [memoryview(buf)[total:]])
                if n == 0:
                    break
                total += n
        finally:
            os.close(fd)
        lines = buf.count(b"\n", 0, total)
        return lines - (1 if buf.find(b"[vsyscall]", 0, total) >= 0 else 0)

    with open("/proc/sys/vm/max_map_count") as f:
        limit = int(f.read())
    anon = MAP_PRIVATE | LINUX.map_anonymous | LINUX.map_noreserve
    npages = 64
    # The model's region between two PROT_READ pages of its own: whatever the kernel maps
    # beside it, the region's VMAs merge with nothing the model does not know.
    got = libc.mmap(0, (npages + 2) * page, PROT_NONE, anon, -1, 0)
    assert got.value != MAP_FAILED, got
    base = got.value + page
    for fence in (got.value, base + npages * page):
        assert libc.mprotect(fence, page, PROT_READ).value == 0
    target = limit - MARGIN
    fill = (target - kernel_count()) // 2
    tail = 8  # PROT_NONE pages past the filler's split ones, to cut holes into (+1 each)
    filler = libc.mmap(0, (2 * fill + 1 + tail) * page, PROT_NONE, anon, -1, 0)
    assert filler.value != MAP_FAILED, filler
    for i in range(fill):
        r = libc.mprotect(filler.value + (2 * i + 1) * page, page, PROT_READ)
        assert r.value == 0, (i, r)
    # Exactly MARGIN below the limit, whichever way the filler's placement left it: a hole
    # in the tail adds a VMA, unmapping one of the PROT_READ pages between two PROT_NONE
    # ones removes one.
    holes, reads = iter(range(2 * fill + 2, 2 * fill + tail, 2)), iter(range(1, 2 * fill, 2))
    while (count := kernel_count()) != target:
        i = next(holes) if count < target else next(reads)
        assert libc.munmap(filler.value + i * page, page).value == 0, (i, count, target)
    seeded = kernel_count()
    vm = PosixVM(page=page, max_map_count=limit)
    assert vm.mmap(0, npages * page, PROT_NONE, anon, chosen=base).value == base
    vm.foreign_vmas = seeded - vm.map_count

    def at(i: int) -> int:
        return base + i * page

    # The scenario starts MARGIN below the limit (odd), so the split at page 24 meets
    # map_count == max - 1: its first split succeeds and its second is refused.
    steps: list[tuple[str, str, tuple[int, ...]]] = [
        *[("mprotect", f"split page {i}", (at(i), page, PROT_READ)) for i in (4, 8, 12, 16, 20)],
        ("mprotect", "split page 24 at max-1", (at(24), page, PROT_READ)),
        ("mprotect", "page 24 again: end split only", (at(24), page, PROT_READ)),
        ("munmap", "middle page 28 at max", (at(28), page)),
        ("munmap", "whole 1-page VMA 4", (at(4), page)),
        ("munmap", "middle page 30 at max-1", (at(30), page)),
        ("mmap", "fixed into hole 4 at max", (at(4), page, HOLE_PROT, anon | MAP_FIXED)),
        ("mmap", "anywhere at max+1", (0, page, PROT_NONE, anon)),
        ("mmap", "fixed, merging, at max+1", (at(30), page, PROT_NONE, anon | MAP_FIXED)),
        ("mprotect", "whole VMA 8, no split", (at(8), page, HOLE_PROT)),
        ("mprotect", "VMA 8 back: merges both sides", (at(8), page, PROT_NONE)),
        ("mprotect", "VMA 4 to none: merges both sides", (at(4), page, PROT_NONE)),
        ("madvise", "dontdump page 40", (at(40), page, MADV_DONTDUMP)),
        ("madvise", "dontdump page 44", (at(44), page, MADV_DONTDUMP)),
        ("mmap", "fixed over middle page 48", (at(48), page, PROT_READ, anon | MAP_FIXED)),
        ("munmap", "page 12 and 13: edge of a VMA", (at(12), 2 * page)),
        ("mprotect", "split page 50", (at(50), page, PROT_READ)),
        ("mprotect", "split page 54", (at(54), page, PROT_READ)),
    ]
    print(json.dumps({"limit": limit, "seeded": seeded}), flush=True)
    for op, what, args in steps:
        if op == "mmap":
            addr, length, prot, flags = args
            want = vm.mmap(addr, length, prot, flags)
            got = libc.mmap(addr, length, prot, flags, -1, 0)
        elif op == "madvise":
            want = vm.madvise(*args)
            got = libc.madvise(*args)
        elif op == "mprotect":
            want = vm.mprotect(*args)
            got = libc.mprotect(*args)
        else:
            want = vm.munmap(*args)
            got = libc.munmap(*args)
        mask = 2**64 - 1
        row = {
            "what": f"{op} {what}",
            "kernel": [got.value & mask, got.errno],
            "model": [want.value & mask, want.errno or 0],
            "kernel_count": kernel_count(),
            "model_count": vm.map_count,
        }
        print(json.dumps(row), flush=True)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="vm.max_map_count is Linux's")
def test_model_agrees_with_kernel_at_map_count_limit() -> None:
    """B.2 [K, E]: mmap refuses when map_count > max; mprotect, madvise and munmap refuse
    a split when map_count >= max (madvise answers EAGAIN); a failed two-split mprotect
    keeps its first split."""
    env = dict(os.environ, PYTHONMALLOC="malloc", MALLOC_MMAP_MAX_="0", MALLOC_ARENA_MAX="1")
    proc = subprocess.run(
        [sys.executable, __file__, "child"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    head, rows = lines[0], lines[1:]
    assert head["limit"] - head["seeded"] == MARGIN
    for row in rows:
        assert row["kernel"] == row["model"], row
        assert row["kernel_count"] == row["model_count"], row
    limit = head["limit"]
    # What this kernel answered (6.18.44, measured): the limit is reached on every path.
    errnos = {r["what"]: r["kernel"][1] for r in rows}
    counts = {r["what"]: r["kernel_count"] for r in rows}
    assert errnos["mprotect split page 24 at max-1"] == ENOMEM
    assert counts["mprotect split page 24 at max-1"] == limit  # the first split stays
    assert errnos["mprotect page 24 again: end split only"] == ENOMEM
    assert errnos["munmap middle page 28 at max"] == ENOMEM
    assert errnos["munmap middle page 30 at max-1"] == 0
    assert errnos["mmap fixed into hole 4 at max"] == 0
    assert counts["mmap fixed into hole 4 at max"] == limit + 1
    assert errnos["mmap anywhere at max+1"] == ENOMEM
    assert errnos["mmap fixed, merging, at max+1"] == ENOMEM
    assert errnos["madvise dontdump page 44"] == EAGAIN
    assert errnos["mmap fixed over middle page 48"] == ENOMEM


if __name__ == "__main__" and sys.argv[1:] == ["child"]:
    _child()
