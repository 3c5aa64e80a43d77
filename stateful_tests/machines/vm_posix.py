"""PosixVMMachine: raw mmap / mprotect / munmap / madvise held to the POSIX model.

Each rule makes one libc call and the same call on the model and compares return value
and errno exactly. After every step, the kernel's view of every region the machine owns
must equal the model's page protections; a rule reads the accounting flags too.

Safety: before any call that can change memory, every part of its range that the model
holds no mapping for must be unmapped in the kernel right now. A hole the machine made can
be taken at once by another allocator in the process, and an mprotect, munmap or
MAP_FIXED running into it would then change or destroy someone else's memory.

Values: every advice, mmap flag and protection of posix_constants' tables is drawn, known or
not; the few whose real call is unsafe or not modelled are still drawn, answered by the
model and labelled, never silently left out.
"""

from __future__ import annotations

import copy
import errno as errno_module
import itertools
import os
from typing import ClassVar

from arenacheck.backends.registry import open_backend
from arenacheck.impl import host
from arenacheck.impl.posix_backend import PosixBackend
from arenacheck.impl.posix_libc import CallResult
from arenacheck.machines.labels import label
from arenacheck.machines.oracle import expect, expect_view, pattern
from arenacheck.machines.vm_shapes import (
    MAX_LIVE,
    SIZE_NAMES,
    Length,
    Offset,
    Region,
    lengths,
    named_sizes,
    offsets,
)
from arenacheck.model.geometry import geometry_named
from arenacheck.model.posix_constants import (
    LINUX_ADVICE,
    LINUX_MAP_FLAGS,
    LINUX_MAP_TYPES,
    LINUX_PROTS,
    MADV_DONTNEED,
    MADV_NORMAL,
    MADV_POPULATE_READ,
    MADV_POPULATE_WRITE,
    MADV_WILLNEED,
    MAP_DROPPABLE,
    MAP_FIXED,
    MAP_FIXED_NOREPLACE,
    MAP_GROWSDOWN,
    MAP_HUGETLB,
    MAP_LOCKED,
    MAP_POPULATE,
    MAP_PRIVATE,
    MAP_TYPE,
    PROT_NONE,
    PROT_READ,
    PROT_WRITE,
    UNSAFE_ADVICE,
    VF,
    PosixFlavor,
    parse_release,
)
from arenacheck.model.posix_vm import MAP_FAILED, NotModelled, PosixResult, PosixVM
from arenacheck.model.spans import OsSpan, SpanState, merge_spans
from arenacheck.record.trace import traced
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    invariant,
    precondition,
    rule,
)

PROTS = (PROT_NONE, PROT_READ, PROT_READ | PROT_WRITE, PROT_WRITE)
BAD_PROT = 0x40  # no architecture accepts it (arm64's extras are 0x10 and 0x20)
ADVICE = (MADV_DONTNEED, MADV_WILLNEED, MADV_NORMAL, 999)
# The OS's whole range (Linux tables; macOS's kernel rejects what it does not know, and
# the model answers that too). Regions are drawn from the flags that leave a plain
# private mapping; the rest go through map_probe, which unmaps at once.
ALL_PROTS = (*(v.value for v in LINUX_PROTS), BAD_PROT)
ALL_ADVICE = (*(v.value for v in LINUX_ADVICE), *ADVICE)
PROBE_ONLY = MAP_GROWSDOWN | MAP_LOCKED | MAP_HUGETLB | MAP_FIXED_NOREPLACE | MAP_FIXED
# Drawn by name: traces record plain values.
REGION_FLAGS = tuple(v.name for v in LINUX_MAP_FLAGS if not v.value & PROBE_ONLY)
MAP_FLAG_BY_NAME = {v.name: v for v in LINUX_MAP_FLAGS}
MAP_TYPE_BY_NAME = {v.name: v for v in LINUX_MAP_TYPES}
NAMES = {v.value: v.name for v in LINUX_ADVICE}
# Private writable memory without NORESERVE is charged: keep such mappings small.
CHARGED_CAP = 0x30000


def overcommit_mode() -> int:
    try:
        with open("/proc/sys/vm/overcommit_memory") as f:
            return int(f.read().strip())
    except OSError:
        return 0


def kernel_config() -> frozenset[str]:
    """The madvise-relevant options this kernel was built with, from files that exist
    only when they are: /sys/kernel/mm/ksm, .../transparent_hugepage, and the
    memory-failure sysctl."""
    probes = {
        "ksm": "/sys/kernel/mm/ksm",
        "thp": "/sys/kernel/mm/transparent_hugepage",
        "memory_failure": "/proc/sys/vm/memory_failure_early_kill",
    }
    return frozenset(name for name, path in probes.items() if os.path.exists(path))


def hugetlb_free_pages() -> int:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("HugePages_Free:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def thp_mode() -> str:
    """The bracketed word of /sys/kernel/mm/transparent_hugepage/enabled."""
    try:
        with open("/sys/kernel/mm/transparent_hugepage/enabled") as f:
            text = f.read()
    except OSError:
        return "never"
    start, end = text.find("["), text.find("]")
    return text[start + 1 : end] if 0 <= start < end else "never"


def linux_vm(page: int, flavor: PosixFlavor) -> PosixVM:
    """A model parameterised by the running kernel: version, config, privilege, limits."""
    if not host.IS_LINUX:
        return PosixVM(page=page, flavor=flavor, overcommit_mode=overcommit_mode())
    return PosixVM(
        page=page,
        flavor=flavor,
        overcommit_mode=overcommit_mode(),
        kernel=parse_release(os.uname().release),
        config=kernel_config(),
        privileged=os.geteuid() == 0,
        hugetlb_free_pages=hugetlb_free_pages(),
        thp_mode=thp_mode(),
    )


def outcome(result: PosixResult) -> str:
    """``ok`` or the errno's name, for labels."""
    return "ok" if result.ok else errno_module.errorcode.get(result.errno or 0, str(result.errno))


class PosixVMMachine(RuleBasedStateMachine):
    backend_name: ClassVar[str] = "posix-native"
    geometry_name: ClassVar[str] = "small"

    regions = Bundle("regions")
    released = Bundle("released")

    def __init__(self) -> None:
        super().__init__()
        backend = open_backend(self.backend_name)
        assert isinstance(backend, PosixBackend)
        self.backend = backend
        self.libc = backend.libc
        flavor = self.libc.flavor
        self.page = backend.page
        self.model = linux_vm(self.page, flavor)
        self.anon = MAP_PRIVATE | flavor.map_anonymous
        self.noreserve = flavor.map_noreserve
        g = geometry_named(self.geometry_name, backend.page, backend.granularity)
        # The Windows machine's sizes, but whole host pages (16 KiB on Apple Silicon).
        self.sizes = named_sizes(self.page, g.reserved_size)
        self.owned: list[Region] = []
        self.linux = host.IS_LINUX
        self.numbers = itertools.count()

    # ---------------------------------------------------------------- helpers

    def compare(self, what: str, got: CallResult, want: PosixResult) -> None:
        ok = got.value == want.value and (want.errno is None or got.errno == want.errno)
        expect(
            ok,
            f"{what}: libc returned {got.value:#x} errno {got.errno}, model predicts "
            f"{want.value & ((1 << 64) - 1):#x} errno {want.errno}",
        )

    def safe(self, lo: int, hi: int) -> bool:
        """Every part of ``[lo, hi)`` the model holds no mapping for is unmapped in the kernel."""
        hi = max(hi, lo + self.page)
        for seg in self.model.vmas.segments(lo, hi):
            if seg.value is None:
                view = self.backend.query(seg.start, seg.end)
                if any(s.state is not SpanState.FREE for s in view):
                    label("range reaches a mapping we do not own: call skipped")
                    return False
        return True

    # ------------------------------------------------------------------ rules

    @precondition(lambda self: len(self.owned) < MAX_LIVE)
    @rule(
        target=regions,
        size=st.sampled_from(SIZE_NAMES),
        prot=st.sampled_from(ALL_PROTS),
        noreserve=st.booleans(),
        extra=st.sampled_from(REGION_FLAGS),
        droppable=st.booleans(),
    )
    @traced
    def map(self, size: str, prot: int, noreserve: bool, extra: str, droppable: bool) -> Region:
        """A mapping between two guard pages of our own.

        The kernel merges a new anonymous mapping into an adjacent one with equal flags
        and takes over its anon_vma, which decides whether a later PROT_NONE refunds the
        charge (B.2). Our own PROT_NONE NORESERVE guards differ in flags from any charged
        mapping, so a mapping of ours never merges with memory the model does not know.
        """
        length = -(-self.sizes[size] // self.page) * self.page
        populates = self.linux and MAP_FLAG_BY_NAME[extra].value & MAP_POPULATE
        if prot & PROT_WRITE and (not noreserve or populates):
            # Charged, or faulted in at once: real memory either way.
            length = min(length, CHARGED_CAP)
        guard_flags = self.anon | self.noreserve
        span = length + 2 * self.page
        got = self.libc.mmap(0, span, PROT_NONE, guard_flags, -1, 0)
        expect(got.value != MAP_FAILED, f"mmap({span:#x}) failed with errno {got.errno}")
        self.compare(
            "mmap(guarded span)",
            got,
            self.model.mmap(0, span, PROT_NONE, guard_flags, chosen=got.value),
        )
        base = got.value + self.page
        request = min(self.sizes[size], length)  # unrounded where it fits: mmap rounds it
        flags = self.anon | MAP_FIXED | (self.noreserve if noreserve else 0)
        if self.linux:
            flags |= MAP_FLAG_BY_NAME[extra].value
            if droppable:
                flags = flags & ~MAP_TYPE | MAP_DROPPABLE | self.libc.flavor.map_anonymous
            label(f"map: {extra}{' droppable' if droppable else ''}")
        expect(self.safe(base, base + request), "harness: MAP_FIXED outside the guarded span")
        want = self.model.mmap(base, request, prot, flags, -1, 0)
        got = self.libc.mmap(base, request, prot, flags, -1, 0)
        self.compare(f"mmap(fixed, {request:#x}, {prot}, {flags:#x})", got, want)
        region = Region(next(self.numbers), base, length)
        self.owned.append(region)
        return region

    @rule(case=st.sampled_from(("len 0", "len 2**63", "len 2**64-1", "no private", "offset 1")))
    @traced
    def map_refused(self, case: str) -> None:
        flags = self.anon | self.noreserve
        args = {
            "len 0": (0, flags, 0),
            "len 2**63": (1 << 63, flags, 0),
            "len 2**64-1": ((1 << 64) - 1, flags, 0),
            "no private": (self.page, flags & ~MAP_PRIVATE, 0),
            "offset 1": (self.page, flags, 1),
        }
        length, fl, offset = args[case]
        want = self.model.mmap(0, length, PROT_NONE, fl, -1, offset, chosen=None)
        got = self.libc.mmap(0, length, PROT_NONE, fl, -1, offset)
        if got.value != MAP_FAILED:
            self.libc.munmap(got.value, length)
        self.compare(f"mmap {case}", got, want)

    @rule(
        region=regions,
        offset=offsets(),
        length=lengths(),
        prot=st.sampled_from(ALL_PROTS),
    )
    @traced
    def protect(self, region: Region, offset: Offset, length: Length, prot: int) -> None:
        addr = offset.resolve(region.base, region.size)
        n = length.resolve(addr, region.base, region.size)
        if prot & PROT_WRITE:
            n = min(n, self.charge_room(addr, n))
        if addr % self.page == 0 and n and not self.safe(addr, addr + n):
            return
        want = self.model.mprotect(addr, n, prot)
        got = self.libc.mprotect(addr, n, prot)
        self.compare(f"mprotect(+{addr - region.base:#x}, {n:#x}, {prot:#x})", got, want)
        label(f"mprotect: {outcome(want)}")

    def charge_room(self, addr: int, n: int) -> int:
        """Cap writable ranges over charged mappings, so commit charge stays small."""
        charged = any(
            s.value is not None and not s.value.noreserve
            for s in self.model.vmas.segments(addr, addr + n)
        )
        return CHARGED_CAP if charged else n

    @rule(region=regions, case=st.sampled_from(("wraps", "len 0 unaligned")))
    @traced
    def protect_refused(self, region: Region, case: str) -> None:
        addr, n = (region.base, (1 << 64) - self.page) if case == "wraps" else (region.base + 1, 0)
        want = self.model.mprotect(addr, n, PROT_READ)
        got = self.libc.mprotect(addr, n, PROT_READ)
        self.compare(f"mprotect {case}", got, want)

    @rule(region=regions, offset=offsets(), length=lengths(past_end=False))
    @traced
    def unmap_part(self, region: Region, offset: Offset, length: Length) -> None:
        addr = offset.resolve(region.base, region.size)
        n = length.resolve(addr, region.base, region.size)
        if not (region.base <= addr and addr + n <= region.end):
            return
        if addr % self.page == 0 and n and not self.safe(addr, addr + n):
            return
        want = self.model.munmap(addr, n)
        got = self.libc.munmap(addr, n)
        self.compare(f"munmap(+{addr - region.base:#x}, {n:#x})", got, want)
        label(f"munmap part: {outcome(want)}")

    @rule(region=regions, offset=offsets(), length=lengths(), advice=st.sampled_from(ALL_ADVICE))
    @traced
    def advise(self, region: Region, offset: Offset, length: Length, advice: int) -> None:
        addr = offset.resolve(region.base, region.size)
        n = length.resolve(addr, region.base, region.size)
        name = NAMES.get(advice, str(advice))
        if not self.linux and advice not in ADVICE:
            label(f"madvise {name}: a Linux value, not drawn on {self.libc.flavor.name}")
            return
        if advice in (MADV_POPULATE_READ, MADV_POPULATE_WRITE):
            n = min(n, CHARGED_CAP)  # one fault per page, and real pages when writing
        if addr % self.page == 0 and n and not self.safe(addr, addr + n):
            return
        try:
            want = self.model.madvise(addr, n, advice)
        except NotModelled as e:
            label(f"madvise {name}: not called, not modelled ({e})")
            return
        if advice in UNSAFE_ADVICE:
            # Even where the model predicts a refusal, a wrong prediction would poison
            # memory for the whole machine: the answer is the model's alone.
            label(f"madvise {name}: not called (unsafe), model {outcome(want)}")
            return
        got = self.libc.madvise(addr, n, advice)
        self.compare(f"madvise(+{addr - region.base:#x}, {n:#x}, {name})", got, want)
        label(f"madvise {name}: {outcome(want)}")

    @rule(region=regions, offset=offsets(), length=lengths(past_end=False))
    @traced
    def decommit(self, region: Region, offset: Offset, length: Length) -> None:
        """mmap(MAP_FIXED, PROT_NONE, NORESERVE) over part of our region: drops contents."""
        addr = offset.resolve(region.base, region.size)
        n = length.resolve(addr, region.base, region.size)
        if not (region.base <= addr and addr + n <= region.end) or not self.safe(addr, addr + n):
            return
        flags = self.anon | self.noreserve | MAP_FIXED
        want = self.model.mmap(addr, n, PROT_NONE, flags, -1, 0)
        got = self.libc.mmap(addr, n, PROT_NONE, flags, -1, 0)
        self.compare(f"mmap(+{addr - region.base:#x}, {n:#x}, MAP_FIXED)", got, want)

    @rule(region=regions, offset=offsets())
    @traced
    def map_noreplace(self, region: Region, offset: Offset) -> None:
        noreplace = self.libc.flavor.map_fixed_noreplace
        addr = offset.resolve(region.base, region.size)
        if noreplace is None or not (region.base <= addr < region.end):
            return
        if addr % self.page or not self.safe(addr, addr + self.page):
            return
        flags = self.anon | self.noreserve | noreplace
        want = self.model.mmap(addr, self.page, PROT_NONE, flags, -1, 0)
        got = self.libc.mmap(addr, self.page, PROT_NONE, flags, -1, 0)
        self.compare(f"mmap(+{addr - region.base:#x}, NOREPLACE)", got, want)
        label(f"noreplace: {outcome(want)}")

    @rule(
        type_name=st.sampled_from(tuple(MAP_TYPE_BY_NAME)),
        flag_name=st.sampled_from(tuple(MAP_FLAG_BY_NAME)),
        prot=st.sampled_from(ALL_PROTS),
    )
    @traced
    def map_probe(self, type_name: str, flag_name: str, prot: int) -> None:
        """Two pages with any type, flag and protection: the answer, then smaps' flags,
        then unmapped at once. Fixed forms go into a guard span of our own."""
        if not self.linux:
            label(f"map_probe: Linux values, not drawn on {self.libc.flavor.name}")
            return
        mtype, extra = MAP_TYPE_BY_NAME[type_name], MAP_FLAG_BY_NAME[flag_name]
        n = 2 * self.page
        flags = mtype.value | self.libc.flavor.map_anonymous | extra.value
        span = 0
        addr = 0
        if extra.value & (MAP_FIXED | MAP_FIXED_NOREPLACE):
            guard_flags = self.anon | self.noreserve
            got = self.libc.mmap(0, n + 2 * self.page, PROT_NONE, guard_flags, -1, 0)
            expect(got.value != MAP_FAILED, f"mmap(probe span) failed with errno {got.errno}")
            want = self.model.mmap(0, n + 2 * self.page, PROT_NONE, guard_flags, chosen=got.value)
            self.compare("mmap(probe span)", got, want)
            span, addr = got.value, got.value + self.page
        where = f"map_probe {mtype.name} {extra.name} prot {prot:#x}"
        try:
            try:
                # On a throwaway copy: only decides whether the call may be made.
                self._probe_model().mmap(addr, n, prot, flags, -1, 0, chosen=None)
            except NotModelled as e:
                if "needs the address" not in str(e):
                    raise
            got = self.libc.mmap(addr, n, prot, flags, -1, 0)
            chosen = None if got.value == MAP_FAILED else got.value
            # Ask again with the kernel's choice: the first ask only decides whether to call.
            probe = self._probe_model()
            want = probe.mmap(addr, n, prot, flags, -1, 0, chosen=chosen)
        except NotModelled as e:
            label(f"map_probe {mtype.name} {extra.name}: not called, not modelled ({e})")
            if span:
                self.unmap_span(span, n + 2 * self.page)
            return
        try:
            self.compare(where, got, want)
            label(f"map_probe {mtype.name} {extra.name}: {outcome(want)}")
            if want.ok and host.IS_LINUX:
                from arenacheck.impl.proc_smaps import vma_flags

                vma = probe.vmas.get(want.value)
                assert vma is not None
                for k in vma_flags(want.value, want.value + n):
                    for code in (*VF, "ac", "nr"):
                        model_has = {"ac": vma.account, "nr": vma.noreserve}.get(code)
                        if model_has is None:
                            model_has = vma.has(code)
                        expect(
                            (code in k.flags) == model_has,
                            f"{where}: {code!r} is {code in k.flags}, model {model_has}",
                        )
        finally:
            if got.value != MAP_FAILED and not span:
                self.libc.munmap(got.value, n)
            if span:
                self.unmap_span(span, n + 2 * self.page)

    def _probe_model(self) -> PosixVM:
        """A throwaway copy of the model: the probe's mapping is gone before the next step."""
        return copy.deepcopy(self.model)

    def unmap_span(self, base: int, size: int) -> None:
        self.compare(
            "munmap(probe span)", self.libc.munmap(base, size), self.model.munmap(base, size)
        )

    @rule(region=regions, offset=offsets(), seed=st.integers(0, 255))
    @traced
    def write_read(self, region: Region, offset: Offset, seed: int) -> None:
        addr = offset.resolve(region.base, region.size)
        data = pattern(seed, 16)
        lo, hi = addr, addr + len(data)
        if not (region.base <= lo and hi <= region.end):
            return
        if self.model.is_guarded(lo, hi):
            label("write_read: guard page, not touched")
            return
        view = self.backend.query(lo, hi)
        if self.model.is_writable(lo, hi):
            expect(all("w" in s.prot for s in view), f"{region}: kernel shows {view} not writable")
            self.backend.write(lo, data)
            self.model.write(lo, data)
            label("write")
        if self.model.is_readable(lo, hi):
            expect(all("r" in s.prot for s in view), f"{region}: kernel shows {view} not readable")
            options = self.model.candidates(lo, len(data))
            self.model.read(lo, len(data))
            got = self.backend.read(lo, len(data))
            expect(got in options, f"{region}: bytes at +{lo - region.base:#x} differ")
            if len(options) > 1:
                label("read: the kernel may choose (lazily freed or droppable)")

    @rule(target=released, region=consumes(regions))
    @traced
    def unmap_all(self, region: Region) -> Region:
        """Unmap the region and its guards: the whole span goes back to the kernel."""
        if not self.safe(region.base - self.page, region.end + self.page):
            return region
        for lo, hi in (
            (region.base - self.page, region.base),
            (region.end, region.end + self.page),
        ):
            self.compare(
                "munmap(guard)", self.libc.munmap(lo, hi - lo), self.model.munmap(lo, hi - lo)
            )
        ours = {(r.start, r.end) for r in self.model.vmas.overlapping(region.base, region.end)}
        want = self.model.munmap(region.base, region.size)
        got = self.libc.munmap(region.base, region.size)
        self.compare("munmap(whole region)", got, want)
        view = self.backend.query(region.base, region.end)
        # Another allocator may map into the range at once; a run of ours still there would
        # keep its boundaries, a newcomer does not share them.
        left = [s for s in view if s.state is not SpanState.FREE and (s.start, s.end) in ours]
        expect(not left, f"{region}: still mapped after munmap: {left}")
        if any(s.state is not SpanState.FREE for s in view):
            label("munmap: the range was already reused by another mapping")
        self.owned.remove(region)
        return region

    @rule(region=released, op=st.sampled_from(("munmap", "mprotect", "madvise")))
    @traced
    def touch_released(self, region: Region, op: str) -> None:
        """A released range, while still free: munmap 0, mprotect ENOMEM, madvise ENOMEM."""
        if not self.model.is_unmapped(region.base, region.end) or not self.safe(
            region.base, region.end
        ):
            return
        if op == "munmap":
            want, got = (
                self.model.munmap(region.base, region.size),
                self.libc.munmap(region.base, region.size),
            )
        elif op == "mprotect":
            want = self.model.mprotect(region.base, region.size, PROT_READ)
            got = self.libc.mprotect(region.base, region.size, PROT_READ)
        else:
            want = self.model.madvise(region.base, region.size, MADV_WILLNEED)
            got = self.libc.madvise(region.base, region.size, MADV_WILLNEED)
        self.compare(f"{op} of a released range", got, want)

    @rule()
    @traced
    def accounting_flags(self) -> None:
        """B.2/B.3: smaps 'ac' exactly on charged runs, 'nr' exactly on NORESERVE ones."""
        if not host.IS_LINUX or not self.owned:
            return
        from arenacheck.impl.proc_smaps import vma_flags

        for region in self.owned:
            kernel = vma_flags(region.base, region.end)
            # B.1 merging: the kernel's VMA boundaries inside the region are the model's.
            inside = range(region.base + 1, region.end)
            edges = {e for k in kernel for e in (k.start, k.end) if e in inside}
            vmas = self.model.kernel_vmas(region.base, region.end)
            want = {e for a, b, _ in vmas for e in (a, b) if e in inside}
            expect(
                edges == want,
                f"{region}: VMAs end at +{sorted(e - region.base for e in edges)}, the "
                f"model's at +{sorted(e - region.base for e in want)}",
            )
            for run in self.model.vmas.overlapping(region.base, region.end):
                for k in kernel:
                    if k.end <= run.start or k.start >= run.end:
                        continue
                    expect(
                        ("ac" in k.flags) == run.value.account,
                        f"{region}: +{k.start - region.base:#x} 'ac' is {'ac' in k.flags}, "
                        f"model charge {run.value.account}",
                    )
                    expect(
                        ("nr" in k.flags) == run.value.noreserve,
                        f"{region}: +{k.start - region.base:#x} 'nr' is {'nr' in k.flags}",
                    )
                    for code in VF:
                        expect(
                            (code in k.flags) == run.value.has(code),
                            f"{region}: +{k.start - region.base:#x} {code!r} is "
                            f"{code in k.flags}, model {run.value.has(code)}",
                        )

    # ------------------------------------------------------------- invariants

    @invariant()
    def kernel_view_matches_model(self) -> None:
        for region in self.owned:
            view = self.backend.query(region.base, region.end)
            for seg in self.model.vmas.overlapping(region.base, region.end):
                got = [s for s in view if s.end > seg.start and s.start < seg.end]
                got = [
                    OsSpan(max(s.start, seg.start), min(s.end, seg.end), s.state, s.prot)
                    for s in got
                ]
                where = f"{region} at +{seg.start - region.base:#x}"
                expect_view(
                    where,
                    merge_spans(got),
                    self.model.expected_view(seg.start, seg.end),
                    region.base,
                )

    def teardown(self) -> None:
        """Unmap every run the model still holds (guards included) and nothing else."""
        for run in self.model.vmas:
            self.libc.munmap(run.start, run.size)
