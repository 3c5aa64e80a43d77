"""The two Linux readers of the kernel's view agree: the PROCMAP_QUERY ioctl, which the
POSIX backend uses where the kernel has it (6.11 and later), and the text of
/proc/self/maps, its fallback. Also: the ioctl reader follows a fork, and a kernel without
the ioctl gets the text reader.
"""

from __future__ import annotations

import errno
import os
import platform
import re
import sys
import threading

import pytest
from arenacheck.impl.posix_backend import PosixBackend
from arenacheck.model.spans import OsSpan, SpanState
from hypothesis import given
from hypothesis import strategies as st

if sys.platform != "linux":
    # Not the linux_only marker: the module imports fcntl, which Windows lacks.
    pytest.skip(
        f"Linux only: needs PROCMAP_QUERY and /proc/self/maps; this is {sys.platform}",
        allow_module_level=True,
    )

import fcntl  # POSIX only: imported past the skip

from arenacheck.impl import proc_maps
from arenacheck.impl.proc_maps import MapsText, linux_regions
from arenacheck.impl.procmap_query import ProcmapQuery, ProcmapUnavailable

PAGES = 64


def kernel_has_ioctl() -> bool:
    found = re.match(r"(\d+)\.(\d+)", platform.release())
    return found is not None and (int(found[1]), int(found[2])) >= (6, 11)


@pytest.fixture(scope="module")
def ioctl_reader() -> ProcmapQuery:
    """The ioctl reader; on a kernel that should have it, its absence is a failure."""
    try:
        return ProcmapQuery()
    except ProcmapUnavailable as e:
        if kernel_has_ioctl():
            raise AssertionError(
                f"kernel {platform.release()} should answer PROCMAP_QUERY: {e}"
            ) from e
        pytest.skip(f"kernel {platform.release()} has no PROCMAP_QUERY (6.11 and later)")


@pytest.fixture(scope="module")
def backend() -> PosixBackend:
    return PosixBackend()


# One operation on a page range of a private region: commit, decommit, or unmap.
ops = st.lists(
    st.tuples(
        st.sampled_from(["commit", "decommit", "release"]),
        st.integers(0, PAGES - 1),
        st.integers(1, 8),
    ),
    max_size=12,
)


@given(ops=ops)
def test_ioctl_and_text_agree(
    ioctl_reader: ProcmapQuery, backend: PosixBackend, ops: list[tuple[str, int, int]]
) -> None:
    page = backend.page
    base = backend.reserve(PAGES * page)
    mapped = set(range(PAGES))
    try:
        for op, first, count in ops:
            last = min(first + count, PAGES)
            addr, size = base + first * page, (last - first) * page
            if op == "release":
                backend.release(addr, size)
                mapped -= set(range(first, last))
            elif set(range(first, last)) <= mapped:
                getattr(backend, op)(addr, size)
        # A page beyond each end too: the readers must clip a neighbour the same way.
        lo, hi = base - page, base + (PAGES + 1) * page
        text = MapsText().spans_in(lo, hi)
        binary = ioctl_reader.spans_in(lo, hi)
        assert binary == text
    finally:
        backend.release(base, PAGES * page)


def test_a_layout_the_arena_makes(ioctl_reader: ProcmapQuery, backend: PosixBackend) -> None:
    """Reserved, committed read-write, reserved: exactly three spans, whatever is around."""
    page = backend.page
    base = backend.reserve(16 * page)
    try:
        backend.commit(base + 4 * page, 8 * page)
        assert ioctl_reader.spans_in(base, base + 16 * page) == [
            OsSpan(base, base + 4 * page, SpanState.RESERVED),
            OsSpan(base + 4 * page, base + 12 * page, SpanState.COMMITTED, "rw-"),
            OsSpan(base + 12 * page, base + 16 * page, SpanState.RESERVED),
        ]
    finally:
        backend.release(base, 16 * page)


def test_threads_query_at_once(ioctl_reader: ProcmapQuery, backend: PosixBackend) -> None:
    """Threads of the process (a pool's workers) query at the same time: each gets its own
    range's spans."""
    page = backend.page
    bases = [backend.reserve(8 * page) for _ in range(8)]
    try:
        for i, base in enumerate(bases):
            backend.commit(base + i * page, page)
        wrong: list[str] = []

        def look(i: int, base: int) -> None:
            want = ioctl_reader.spans_in(base, base + 8 * page)
            for _ in range(5000):
                got = ioctl_reader.spans_in(base, base + 8 * page)
                if got != want:
                    wrong.append(f"thread {i}: {got} instead of {want}")
                    return

        threads = [threading.Thread(target=look, args=(i, b)) for i, b in enumerate(bases)]
        # Switch threads as often as the interpreter can, so that they interleave between
        # any two bytecodes of a query, not only where a system call lets go of the GIL.
        interval = sys.getswitchinterval()
        sys.setswitchinterval(1e-6)
        try:
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        finally:
            sys.setswitchinterval(interval)
        assert not wrong, wrong[0]
    finally:
        for base in bases:
            backend.release(base, 8 * page)


def test_nothing_above_is_free(ioctl_reader: ProcmapQuery) -> None:
    """No VMA at or above the address (the ioctl's ENOENT) reads as free."""
    top = 1 << 47
    assert ioctl_reader.spans_in(top, top + (1 << 20)) == [
        OsSpan(top, top + (1 << 20), SpanState.FREE)
    ]


def test_a_forked_child_sees_its_own_mappings(
    ioctl_reader: ProcmapQuery, backend: PosixBackend
) -> None:
    """The descriptor names the process that opened it: a child reopens it, or it would
    report its parent's address space."""
    page = backend.page
    ioctl_reader.spans_in(0, page)  # opened in this process before the fork
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: map something the parent never has, and look at it
        code = 1
        try:
            base = backend.reserve(4 * page)
            backend.commit(base, page)
            seen = ioctl_reader.spans_in(base, base + 4 * page)
            code = 0 if seen[0] == OsSpan(base, base + page, SpanState.COMMITTED, "rw-") else 2
        finally:
            os.write(write_end, bytes([code]))
            os._exit(0)
    os.close(write_end)
    try:
        got = os.read(read_end, 1)
    finally:
        os.close(read_end)
        os.waitpid(pid, 0)
    assert got == b"\x00", f"the child saw the wrong address space (code {got!r})"


def test_a_kernel_without_the_ioctl_gets_the_text(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_ioctl(*args: object) -> None:
        raise OSError(errno.ENOTTY, os.strerror(errno.ENOTTY))

    monkeypatch.setattr(fcntl, "ioctl", no_ioctl)
    monkeypatch.setattr(proc_maps, "_READER", None)
    with pytest.raises(ProcmapUnavailable):
        ProcmapQuery()
    assert isinstance(linux_regions(), MapsText)
