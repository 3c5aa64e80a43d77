"""Reference model of mmap, mprotect, munmap and madvise (docs/VM_SEMANTICS.md B.1 and B.2).

Only anonymous private mappings are modelled. As with the Windows model, addresses the
model never mapped are holes in its world; a harness must only point calls that reach
outside its own mappings at ranges the OS confirms are unmapped.

Invariant: ``vmas`` holds one run per stretch of pages with equal flags; ``charged_bytes``
is the size of the runs with ``account`` set, which is what Linux adds to Committed_AS.
The kernel's VMAs are those runs cut at ``sticky`` (a split a failed mprotect left
behind), and ``map_count`` counts them plus ``foreign_vmas``, the process's other
mappings, against ``max_map_count``.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import partial

from arenacheck.model.arith import MASK64, round_up
from arenacheck.model.contents import PageContents
from arenacheck.model.intervals import IntervalMap
from arenacheck.model.posix_constants import (
    EAGAIN,
    EEXIST,
    EFAULT,
    EINVAL,
    ENOMEM,
    EPERM,
    LINUX,
    LINUX_ADVICE,
    LINUX_MAP_FLAGS,
    LINUX_MAP_TYPES,
    MADV_COLD,
    MADV_COLLAPSE,
    MADV_DODUMP,
    MADV_DOFORK,
    MADV_DONTDUMP,
    MADV_DONTFORK,
    MADV_DONTNEED,
    MADV_DONTNEED_LOCKED,
    MADV_FREE,
    MADV_GUARD_INSTALL,
    MADV_GUARD_REMOVE,
    MADV_HUGEPAGE,
    MADV_KEEPONFORK,
    MADV_MERGEABLE,
    MADV_NOHUGEPAGE,
    MADV_NORMAL,
    MADV_PAGEOUT,
    MADV_POPULATE_READ,
    MADV_POPULATE_WRITE,
    MADV_RANDOM,
    MADV_REMOVE,
    MADV_SEQUENTIAL,
    MADV_UNMERGEABLE,
    MADV_WILLNEED,
    MADV_WIPEONFORK,
    MAP_DROPPABLE,
    MAP_FIXED,
    MAP_FIXED_NOREPLACE,
    MAP_GROWSDOWN,
    MAP_HUGE_SHIFT,
    MAP_HUGETLB,
    MAP_LOCKED,
    MAP_NONBLOCK,
    MAP_POPULATE,
    MAP_PRIVATE,
    MAP_SHARED,
    MAP_STACK,
    MAP_SYNC,
    MAP_TYPE,
    PROT_EXEC,
    PROT_GROWSDOWN,
    PROT_GROWSUP,
    PROT_NONE,
    PROT_READ,
    PROT_WRITE,
    UNSAFE_ADVICE,
    VF,
    KernelVersion,
    PosixFlavor,
    Value,
)
from arenacheck.model.spans import OsSpan, SpanState, merge_spans, prot_letters

MAP_FAILED = MASK64
HUGE_PAGE = 2 << 20

# Advice that only sets or clears vm_flags bits: (set, clear). Each may split a VMA.
_FLAG_ADVICE: dict[int, tuple[int, int]] = {
    MADV_NORMAL: (0, VF["sr"] | VF["rr"]),
    MADV_RANDOM: (VF["rr"], VF["sr"]),
    MADV_SEQUENTIAL: (VF["sr"], VF["rr"]),
    MADV_DONTFORK: (VF["dc"], 0),
    MADV_DOFORK: (0, VF["dc"]),
    MADV_MERGEABLE: (VF["mg"], 0),
    MADV_UNMERGEABLE: (0, VF["mg"]),
    MADV_HUGEPAGE: (VF["hg"], VF["nh"]),
    MADV_NOHUGEPAGE: (VF["nh"], VF["hg"]),
    MADV_DONTDUMP: (VF["dd"], 0),
    MADV_DODUMP: (0, VF["dd"]),
    MADV_WIPEONFORK: (VF["wf"], 0),
    MADV_KEEPONFORK: (0, VF["wf"]),
}
# madvise_dontneed_free_valid_vma, can_madv_lru_vma, is_valid_guard_vma: refused on VM_LOCKED.
_REFUSED_WHEN_LOCKED = frozenset(
    {MADV_DONTNEED, MADV_FREE, MADV_COLD, MADV_PAGEOUT, MADV_GUARD_INSTALL, MADV_REMOVE}
)


class NotModelled(ValueError):
    """A call outside what the model predicts; a harness must not generate it."""


@dataclass(frozen=True)
class Vma:
    """Flags of a run of pages: protection, the accounting bits of B.2, and the other
    vm_flags bits that decide merging (``flags``, bits of posix_constants.VF)."""

    prot: int
    noreserve: bool
    account: bool = False
    # The anon_vma's identity, 0 for none: VMAs with different ones never merge (B.1).
    anon: int = 0
    flags: int = 0

    @property
    def touched(self) -> bool:
        """Whether the VMA has an anon_vma: a page of it was faulted in for writing."""
        return self.anon != 0

    @property
    def writable(self) -> bool:
        return bool(self.prot & PROT_WRITE)

    def anon_compatible(self, other: Vma) -> bool:
        """anon_vma_compatible: the flags equal but for VM_READ, VM_WRITE and VM_EXEC."""
        return replace(self, prot=0, anon=0) == replace(other, prot=0, anon=0)

    def has(self, code: str) -> bool:
        return bool(self.flags & VF[code])


@dataclass(frozen=True)
class PosixResult:
    """Return value and errno (``None`` on success: errno is left alone)."""

    value: int
    errno: int | None = None

    @property
    def ok(self) -> bool:
        return self.errno is None


class _SplitRefused(Exception):
    """A VMA split the map-count limit refused; carries the errno the call returns."""


@dataclass
class PosixVM:
    page: int = 4096
    flavor: PosixFlavor = LINUX
    overcommit_mode: int = 0
    task_size: int = (1 << 47) - 4096
    data_limit: int | None = None
    # The running kernel and what it was built with: advice a kernel is too old for, or
    # built without (CONFIG_KSM "ksm", CONFIG_TRANSPARENT_HUGEPAGE "thp",
    # CONFIG_MEMORY_FAILURE "memory_failure"), is EINVAL.
    kernel: KernelVersion = (6, 18, 0)
    config: frozenset[str] = frozenset({"ksm", "thp"})
    # CAP_SYS_ADMIN / CAP_SYS_RAWIO / CAP_IPC_LOCK: root bypasses mmap_min_addr and the
    # memlock limit, and may poison pages.
    privileged: bool = False
    mmap_min_addr: int = 4096
    memlock_limit: int | None = None
    hugetlb_free_pages: int = 0
    # /sys/kernel/mm/transparent_hugepage/enabled: where a read fault may take a huge
    # page ("always": every VMA; "madvise": MADV_HUGEPAGE ones; "never").
    thp_mode: str = "madvise"
    max_map_count: int | None = None
    foreign_vmas: int = 0
    vmas: IntervalMap[Vma] = field(default_factory=IntervalMap)
    guards: IntervalMap[bool] = field(default_factory=IntervalMap)
    sticky: set[int] = field(default_factory=set)
    # The last anon_vma identity handed out (Vma.anon).
    anon_vmas: int = 0
    # Lazily freed pages (MADV_FREE): each candidate is what the page may read back as.
    either: dict[int, list[bytearray]] = field(default_factory=dict)
    contents: PageContents = field(init=False)

    def __post_init__(self) -> None:
        self.contents = PageContents(self.page)

    # ---------------------------------------------------------------- queries

    @property
    def linux(self) -> bool:
        return self.flavor.name.startswith("linux")

    @property
    def charged_bytes(self) -> int:
        return sum(r.size for r in self.vmas if r.value.account)

    @property
    def data_bytes(self) -> int:
        """Private writable bytes: what RLIMIT_DATA counts (B.2)."""
        return sum(r.size for r in self.vmas if r.value.writable)

    @property
    def map_count(self) -> int:
        """The process's VMA count as ``mm->map_count`` holds it."""
        return self.foreign_vmas + len(self.vmas) + len(self.sticky)

    def kernel_vmas(self, lo: int, hi: int) -> list[tuple[int, int, Vma]]:
        """The kernel's VMAs intersecting ``[lo, hi)``, unclipped."""
        out: list[tuple[int, int, Vma]] = []
        for seg in self.vmas.overlapping(lo, hi):
            run = self.vmas.run_at(seg.start)
            assert run is not None
            if out and out[-1][1] > run.start:
                continue
            cuts = sorted(b for b in self.sticky if run.start < b < run.end)
            edges = [run.start, *cuts, run.end]
            out += [(a, b, run.value) for a, b in itertools.pairwise(edges) if b > lo and a < hi]
        return out

    def expected_view(self, lo: int, hi: int) -> list[OsSpan]:
        """``[lo, hi)`` as the kernel's view must show it: gaps free, PROT_NONE mappings
        reserved, the rest committed with their protection."""
        spans = []
        for seg in self.vmas.segments(lo, hi):
            if seg.value is None:
                spans.append(OsSpan(seg.start, seg.end, SpanState.FREE))
            elif seg.value.prot == PROT_NONE:
                spans.append(OsSpan(seg.start, seg.end, SpanState.RESERVED))
            else:
                prot = prot_letters(seg.value.prot)
                spans.append(OsSpan(seg.start, seg.end, SpanState.COMMITTED, prot))
        return merge_spans(spans)

    def prot_at(self, addr: int) -> int | None:
        vma = self.vmas.get(addr)
        return None if vma is None else vma.prot

    def is_mapped(self, lo: int, hi: int) -> bool:
        return self.vmas.covers(lo, hi)

    def is_unmapped(self, lo: int, hi: int) -> bool:
        return not self.vmas.overlapping(lo, hi)

    def is_writable(self, lo: int, hi: int) -> bool:
        segs = self.vmas.segments(lo, hi)
        return all(s.value is not None and s.value.writable for s in segs)

    def is_readable(self, lo: int, hi: int) -> bool:
        segs = self.vmas.segments(lo, hi)
        return all(s.value is not None and s.value.prot & PROT_READ for s in segs)

    def is_guarded(self, lo: int, hi: int) -> bool:
        """Some page of ``[lo, hi)`` holds a guard marker: any access to it faults."""
        return bool(self.guards.overlapping(lo, hi))

    def shown_prot(self, prot: int) -> int:
        """The protection the OS reports for a requested one (XNU adds READ to W or X)."""
        if self.flavor.write_implies_read and prot & (PROT_WRITE | PROT_EXEC):
            return prot | PROT_READ
        return prot

    def _prot_valid(self, prot: int) -> bool:
        valid = PROT_READ | PROT_WRITE | PROT_EXEC | self.flavor.extra_prot_bits
        return not prot & ~valid

    def _data_over_limit(self, extra: int) -> bool:
        return self.data_limit is not None and self.data_bytes + extra > self.data_limit

    def _over_map_count(self, strict: bool) -> bool:
        """do_mmap refuses when ``map_count > max``; a split when ``map_count >= max``."""
        if self.max_map_count is None:
            return False
        if strict:
            return self.map_count > self.max_map_count
        return self.map_count >= self.max_map_count

    def advice_valid(self, advice: int) -> bool:
        """madvise_behavior_valid for this kernel version and config."""
        if not self.linux:
            known = {MADV_NORMAL, MADV_RANDOM, MADV_SEQUENTIAL, MADV_WILLNEED, MADV_DONTNEED}
            return advice in known or advice == self.flavor.madv_free
        return self.kernel_knows(LINUX_ADVICE, advice)

    def kernel_knows(self, table: tuple[Value, ...], value: int) -> bool:
        """Whether this Linux's version and config have ``value`` of ``table`` (B.5)."""
        for v in table:
            if v.value == value and v.since is not None:
                return self.kernel >= v.since and (v.needs is None or v.needs in self.config)
        return False

    # ------------------------------------------------------------------- mmap

    def mmap(
        self,
        addr: int,
        length: int,
        prot: int,
        flags: int,
        fd: int = -1,
        offset: int = 0,
        chosen: int | None = None,
    ) -> PosixResult:
        """An anonymous mapping; ``chosen``: where the OS put a mapping without MAP_FIXED."""
        anon = self.flavor.map_anonymous
        noreplace = self.flavor.map_fixed_noreplace or 0
        if self.linux and not self.kernel_knows(LINUX_MAP_FLAGS, MAP_FIXED_NOREPLACE):
            noreplace = 0  # older kernels ignore the bit: the address is only a hint
        if not flags & anon or fd != -1:
            raise NotModelled("only anonymous mappings with fd -1 are modelled")
        mtype = flags & MAP_TYPE if self.linux else flags & (MAP_PRIVATE | MAP_SHARED)
        hugetlb = self.linux and bool(flags & MAP_HUGETLB)
        if offset % self.page:
            return PosixResult(MAP_FAILED, EINVAL)
        if hugetlb:
            # ksys_mmap_pgoff: the size encoding first, then the length is rounded to it.
            size_log = (flags >> MAP_HUGE_SHIFT) & 0x3F
            if size_log not in (0, 21, 30):
                return PosixResult(MAP_FAILED, EINVAL)
            length = round_up(length, 1 << (size_log or 21))
        if length == 0:
            return PosixResult(MAP_FAILED, EINVAL)
        size = round_up(length, self.page)
        if size > MASK64 or size > self.task_size:
            return PosixResult(MAP_FAILED, ENOMEM)
        if self._over_map_count(strict=True):
            return PosixResult(MAP_FAILED, ENOMEM)
        fixed = bool(flags & (MAP_FIXED | noreplace))
        if fixed and addr % self.page:
            return PosixResult(MAP_FAILED, EINVAL)
        if fixed and addr + size > self.task_size:
            return PosixResult(MAP_FAILED, ENOMEM)
        if fixed and addr < self.mmap_min_addr and not self.privileged:
            return PosixResult(MAP_FAILED, EPERM)
        # The kernel turns NOREPLACE into FIXED and still refuses an overlap.
        if fixed and flags & noreplace and not self.is_unmapped(addr, addr + size):
            return PosixResult(MAP_FAILED, EEXIST)
        vm_flags = self._map_vm_flags(flags)
        if flags & MAP_LOCKED and self.memlock_limit is not None:
            if self.memlock_limit == 0:
                return PosixResult(MAP_FAILED, EPERM)
            locked = sum(r.size for r in self.vmas if r.value.has("lo"))
            if locked + size > self.memlock_limit:
                return PosixResult(MAP_FAILED, EAGAIN)
        if hugetlb:
            return self._mmap_hugetlb(size, flags, mtype)
        if mtype == MAP_SHARED:
            raise NotModelled("shared anonymous mappings are not modelled")
        if self.linux and mtype == MAP_DROPPABLE and self.kernel_knows(LINUX_MAP_TYPES, mtype):
            # Locked or stack-like droppable memory makes no sense (do_mmap).
            if flags & (MAP_LOCKED | MAP_GROWSDOWN):
                return PosixResult(MAP_FAILED, EINVAL)
            vm_flags |= VF["dp"] | VF["wf"] | VF["dd"]
        elif mtype != MAP_PRIVATE:
            return PosixResult(MAP_FAILED, EINVAL)
        droppable = bool(vm_flags & VF["dp"])
        noreserve = droppable or (
            bool(flags & self.flavor.map_noreserve) and self.overcommit_mode != 2
        )
        writable = bool(prot & PROT_WRITE)
        # mmap ignores unknown protection bits rather than failing (B.1 [E]).
        shown = self.shown_prot(prot & (PROT_READ | PROT_WRITE | PROT_EXEC))
        populate = (flags & MAP_POPULATE and not flags & MAP_NONBLOCK) or flags & MAP_LOCKED
        vma = Vma(
            shown,
            noreserve,
            account=writable and not noreserve and self.flavor.accounts_commit,
            flags=vm_flags,
        )
        if fixed:
            base = addr
            if self._splits_middle(base, base + size) and self._over_map_count(strict=False):
                return PosixResult(MAP_FAILED, ENOMEM)
        else:
            if chosen is None:
                raise NotModelled("a mapping without MAP_FIXED needs the address the OS chose")
            if chosen % self.page or not self.is_unmapped(chosen, chosen + size):
                raise ValueError(
                    f"the OS placed {size:#x} bytes at {chosen:#x}, which the model holds"
                )
            base = chosen
        # MAP_FIXED replaces what it covers: only the net growth counts against the limit.
        replaced = sum(s.size for s in self.vmas.overlapping(base, base + size) if s.value.writable)
        if writable and self._data_over_limit(size - replaced):
            return PosixResult(MAP_FAILED, ENOMEM)
        self._set(base, base + size, vma)
        self.guards.set(base, base + size, None)
        self._share_anon_vma(base, base + size)
        self._zero(base, base + size)
        if populate and writable:
            # Populating writable private memory write-faults it: the VMA gets an anon_vma.
            self._mark_touched(base, base + size)
        return PosixResult(base)

    def _map_vm_flags(self, flags: int) -> int:
        """calc_vm_flag_bits: the vm_flags bits an mmap flag sets on Linux."""
        if not self.linux:
            return 0
        out = 0
        if flags & MAP_GROWSDOWN:
            out |= VF["gd"]
        if flags & MAP_LOCKED:
            out |= VF["lo"]
        if flags & MAP_SYNC and self.kernel_knows(LINUX_MAP_FLAGS, MAP_SYNC):
            out |= VF["sf"]
        # Not MAP_STACK's own version (2.6.27): the one that made it mean VM_NOHUGEPAGE.
        if flags & MAP_STACK and self.kernel >= (6, 7, 0):
            out |= VF["nh"]
        return out

    def _mmap_hugetlb(self, size: int, flags: int, mtype: int) -> PosixResult:
        """A hugetlbfs file mapping: do_mmap's file types, then hugetlb_reserve_pages."""
        if mtype not in (MAP_SHARED, MAP_PRIVATE, 0x03):
            return PosixResult(MAP_FAILED, EINVAL)
        huge = 1 << (((flags >> MAP_HUGE_SHIFT) & 0x3F) or 21)
        needed = size // huge
        if not flags & self.flavor.map_noreserve and needed > self.hugetlb_free_pages:
            return PosixResult(MAP_FAILED, ENOMEM)
        raise NotModelled("hugetlb mappings are not modelled beyond their reservation")

    def _splits_middle(self, lo: int, hi: int) -> bool:
        """``[lo, hi)`` lies strictly inside one VMA: removing it leaves a VMA either side."""
        for start, end, _ in self.kernel_vmas(lo, lo + 1):
            return start < lo and hi < end
        return False

    def _set(self, lo: int, hi: int, value: Vma | None) -> None:
        """Give ``[lo, hi)`` a value; the kernel merges there, so splits left behind go."""
        self.vmas.set(lo, hi, value)
        self.sticky = {b for b in self.sticky if not lo <= b <= hi}

    # --------------------------------------------------------------- mprotect

    def mprotect(self, addr: int, length: int, prot: int) -> PosixResult:
        """Applies to each mapping from ``addr`` up to the first hole, then ENOMEM (B.1)."""
        grows = prot & (PROT_GROWSDOWN | PROT_GROWSUP) if self.linux else 0
        prot &= ~grows
        if grows == PROT_GROWSDOWN | PROT_GROWSUP:
            return PosixResult(-1, EINVAL)
        # do_mprotect_pkey's order: alignment, zero length, wrap-around, then protection.
        if addr % self.page:
            return PosixResult(-1, EINVAL)
        if length == 0:
            return PosixResult(0)
        end = addr + round_up(length, self.page)
        if end > MASK64 or end > self.task_size:
            return PosixResult(-1, ENOMEM)
        if not self._prot_valid(prot):
            return PosixResult(-1, EINVAL)
        if grows:
            first = self.kernel_vmas(addr, MASK64)
            if not first or (grows == PROT_GROWSDOWN and first[0][0] >= end):
                return PosixResult(-1, ENOMEM)
            if grows == PROT_GROWSUP and first[0][0] > addr:
                return PosixResult(-1, ENOMEM)
            # x86 has no VM_GROWSUP; a VM_GROWSDOWN stack is not modelled further.
            if grows == PROT_GROWSUP or not first[0][2].has("gd"):
                return PosixResult(-1, EINVAL)
            raise NotModelled("mprotect(PROT_GROWSDOWN) of a growsdown mapping")
        # The extra bits (PROT_SEM) are accepted and set no vm_flags bit (calc_vm_prot_bits):
        # they neither split nor change a VMA.
        shown = self.shown_prot(prot & (PROT_READ | PROT_WRITE | PROT_EXEC))
        for seg in self.vmas.segments(addr, end):
            if seg.value is None:
                return PosixResult(-1, ENOMEM)
            new = self._reprotect(seg.value, shown)
            if new.writable and not seg.value.writable and self._data_over_limit(seg.size):
                return PosixResult(-1, ENOMEM)
            try:
                self._modify(seg.start, seg.end, partial(self._reprotect, prot=shown))
            except _SplitRefused:
                return PosixResult(-1, ENOMEM)
            if seg.value.has("lo") and shown & PROT_WRITE and not seg.value.writable:
                # A locked private mapping made writable is populated at once (write faults).
                self._mark_touched(seg.start, seg.end)
        return PosixResult(0)

    def _modify(self, lo: int, hi: int, change: Callable[[Vma], Vma]) -> None:
        """vma_modify over each VMA of ``[lo, hi)``: split at the ends, change, merge.

        A split checks ``map_count >= max`` first; when the second split of a VMA is
        refused the first stays, unmerged, and the call fails (_SplitRefused).
        """
        for start, end, old in self.kernel_vmas(lo, hi):
            new = change(old)
            if replace(new, anon=old.anon) == old:
                continue  # newflags == oldflags: no split, no merge
            a, b = max(start, lo), min(end, hi)
            if start < a:
                if self._over_map_count(strict=False):
                    raise _SplitRefused
                self.sticky.add(a)
            if b < end and self._over_map_count(strict=False):
                raise _SplitRefused
            self.sticky.discard(a)
            self._set(a, b, new)
            self._share_anon_vma(a, b)

    def _share_anon_vma(self, lo: int, hi: int) -> None:
        """Pages that now merge with a touched neighbour share its anon_vma (B.1 merging).

        The kernel merges adjacent anonymous VMAs with equal flags when at most one has an
        anon_vma, or both the same one, and the merged VMA keeps it: the untouched side
        takes it, which decides whether a later PROT_NONE refunds its charge (B.2). Two
        different anon_vmas never merge, and the previous VMA is merged with first.
        """
        changed = True
        while changed:
            changed = False
            runs = self.vmas.overlapping(lo - self.page, hi + self.page)
            for a, b in itertools.pairwise(runs):
                if a.end != b.start or a.value.touched == b.value.touched:
                    continue
                anon = a.value.anon or b.value.anon
                if replace(a.value, anon=anon) != replace(b.value, anon=anon):
                    continue
                untouched = a if not a.value.touched else b
                whole = self.vmas.run_at(untouched.start)
                assert whole is not None
                self.vmas.set(whole.start, whole.end, replace(whole.value, anon=anon))
                changed = True
                break

    def _reprotect(self, vma: Vma, prot: int) -> Vma:
        """mprotect_fixup's accounting: charge on first write permission, refund if untouched."""
        account = vma.account
        if (
            prot & PROT_WRITE
            and not (vma.account or vma.writable or vma.noreserve)
            and self.flavor.accounts_commit
        ):
            account = True
        elif not prot & PROT_WRITE and not vma.touched:
            account = False
        return replace(vma, prot=prot, account=account)

    # ----------------------------------------------------------------- munmap

    def munmap(self, addr: int, length: int) -> PosixResult:
        """Holes inside the range are not an error (B.1); a hole punched in the middle of
        one VMA needs a free map-count slot."""
        if addr % self.page or length == 0:
            return PosixResult(-1, EINVAL)
        if addr > self.task_size or length > self.task_size - addr:
            return PosixResult(-1, EINVAL)
        end = addr + round_up(length, self.page)
        if self._splits_middle(addr, end) and self._over_map_count(strict=False):
            return PosixResult(-1, ENOMEM)
        self._set(addr, end, None)
        self.guards.set(addr, end, None)
        self._zero(addr, end)
        return PosixResult(0)

    # ---------------------------------------------------------------- madvise

    def madvise(self, addr: int, length: int, advice: int) -> PosixResult:
        """madvise_should_skip, then each VMA in order; a hole is ENOMEM once all is done,
        an error from a VMA ends the call at once."""
        if not self.advice_valid(advice) or addr % self.page:
            return PosixResult(-1, EINVAL)
        size = round_up(length, self.page)
        if self.linux and ((length and size > MASK64) or addr + size > MASK64):
            return PosixResult(-1, EINVAL)
        if length == 0:
            return PosixResult(0)
        end = addr + size
        if advice in UNSAFE_ADVICE:
            if not self.privileged:
                return PosixResult(-1, EPERM)
            raise NotModelled("a privileged MADV_HWPOISON / MADV_SOFT_OFFLINE poisons memory")
        if not self.linux:
            return self._madvise_darwin(addr, end, advice)
        if advice in (MADV_POPULATE_READ, MADV_POPULATE_WRITE):
            return self._populate(addr, end, advice == MADV_POPULATE_WRITE)
        hole = False
        for seg in self.vmas.segments(addr, end):
            if seg.value is None:
                hole = True
                continue
            errno = self._advise_vma(seg.start, seg.end, seg.value, advice)
            if errno is not None:
                return PosixResult(-1, errno)
        if hole:
            return PosixResult(-1, ENOMEM)
        return PosixResult(0)

    def _madvise_darwin(self, lo: int, hi: int, advice: int) -> PosixResult:
        hole = False
        for seg in self.vmas.segments(lo, hi):
            if seg.value is None:
                hole = True
            elif advice == MADV_DONTNEED:
                self._zero(seg.start, seg.end)
            elif advice == self.flavor.madv_free:
                self._lazy_free(seg.start, seg.end)
        if hole:
            return PosixResult(-1, self.flavor.madvise_hole_errno)
        return PosixResult(0)

    def _advise_vma(self, lo: int, hi: int, vma: Vma, advice: int) -> int | None:
        """madvise_vma_behavior on one run of private anonymous memory; the errno or None."""
        if advice in _REFUSED_WHEN_LOCKED and vma.has("lo"):
            return EINVAL
        if advice in _FLAG_ADVICE:
            set_bits, clear_bits = _FLAG_ADVICE[advice]
            if vma.has("dp") and advice in (MADV_KEEPONFORK, MADV_DODUMP):
                return EINVAL  # droppable memory never survives fork or enters a core dump
            if vma.has("dp") and advice == MADV_MERGEABLE:
                return None  # ksm_madvise ignores VM_DROPPABLE mappings
            try:
                self._modify(lo, hi, lambda v: replace(v, flags=(v.flags | set_bits) & ~clear_bits))
            except _SplitRefused:
                return EAGAIN  # madvise_vma_behavior turns ENOMEM into EAGAIN
            return None
        if advice in (MADV_DONTNEED, MADV_DONTNEED_LOCKED):
            self._zero(lo, hi)  # guard markers survive the zap
        elif advice == MADV_FREE:
            self._lazy_free(lo, hi)
        elif advice == MADV_REMOVE:
            return EINVAL  # only shared or file-backed memory has pages to punch out
        elif advice == MADV_COLLAPSE:
            lo_huge, hi_huge = round_up(lo, HUGE_PAGE), hi - hi % HUGE_PAGE
            if lo_huge >= hi_huge or vma.has("nh"):
                return EINVAL
            raise NotModelled("MADV_COLLAPSE over a whole huge page depends on what is resident")
        elif advice == MADV_GUARD_INSTALL:
            self.guards.set(lo, hi, True)
            self._zero(lo, hi)
            # Installing markers gives the VMA an anon_vma, as a first write would.
            self._mark_touched(lo, hi)
        elif advice == MADV_GUARD_REMOVE:
            self.guards.set(lo, hi, None)
        # WILLNEED, COLD, PAGEOUT: hints; the bytes read back unchanged (swap keeps them).
        return None

    def _populate(self, lo: int, hi: int, write: bool) -> PosixResult:
        """madvise_populate: faults each page in order; stops at the first failure."""
        need = PROT_WRITE if write else PROT_READ
        for seg in self.vmas.segments(lo, hi):
            if seg.value is None:
                return PosixResult(-1, ENOMEM)
            if not seg.value.prot & need:
                return PosixResult(-1, EINVAL)
            guard = self.guards.overlapping(seg.start, seg.end)
            stop = guard[0].start if guard else seg.end
            if write and stop > seg.start:
                self._mark_touched(seg.start, stop)
            elif stop > seg.start:
                self._huge_read_fault(seg.start, stop)
            if guard:
                return PosixResult(-1, EFAULT)  # the fault would have raised SIGSEGV
        return PosixResult(0)

    def read(self, addr: int, n: int) -> None:
        """Record a load the harness made: a read fault may give the VMA an anon_vma."""
        self._huge_read_fault(addr, addr + n)

    def _huge_read_fault(self, lo: int, hi: int) -> None:
        """do_huge_pmd_anonymous_page prepares an anon_vma even for the huge zero page, so
        a read in a THP-eligible, 2 MiB-aligned window wholly inside a VMA touches it (a
        small-page read maps the zero page and does not) [E 6.18.44]."""
        if not self.linux or "thp" not in self.config or self.thp_mode == "never":
            return
        for start, end, vma in self.kernel_vmas(lo, hi):
            if vma.touched or vma.has("nh") or not vma.prot & (PROT_READ | PROT_WRITE):
                continue
            if self.thp_mode == "madvise" and not vma.has("hg"):
                continue
            a, b = max(start, lo), min(end, hi)
            first = a - a % HUGE_PAGE
            if any(start <= w and w + HUGE_PAGE <= end for w in range(first, b, HUGE_PAGE)):
                self._mark_touched(a, b)

    def _mark_touched(self, lo: int, hi: int) -> None:
        """anon_vma_prepare for each VMA of ``[lo, hi)`` without one: it reuses the anon_vma
        of the next, else the previous, adjacent VMA whose flags differ at most in access
        bits (find_mergeable_anon_vma), else gets a new one."""
        for seg in self.vmas.overlapping(lo, hi):
            whole = self.vmas.run_at(seg.start)
            assert whole is not None
            if whole.value.touched:
                continue
            anon = 0
            for near in (self.vmas.run_at(whole.end), self.vmas.run_at(whole.start - 1)):
                if (
                    near is not None
                    and near.value.touched
                    and near.value.anon_compatible(whole.value)
                ):
                    anon = near.value.anon
                    break
            if not anon:
                self.anon_vmas += 1
                anon = self.anon_vmas
            self.vmas.set(whole.start, whole.end, replace(whole.value, anon=anon))
            self._share_anon_vma(whole.start, whole.end)

    # --------------------------------------------------------------- contents

    def _zero(self, lo: int, hi: int) -> None:
        self.contents.zero(lo, hi)
        for p in [p for p in self.either if lo <= p < hi]:
            del self.either[p]

    def _lazy_free(self, lo: int, hi: int) -> None:
        """MADV_FREE: each written page reads back as before or as zeros, until rewritten,
        and which one stays unknown after a write too."""
        for p in sorted({*self.contents.pages, *self.either}):
            if not lo <= p < hi:
                continue
            old = self.either.pop(p, None) or [bytearray(self.contents.pages[p])]
            zero = bytearray(self.page)
            self.either[p] = [*(c for c in old if c != zero), zero]
            self.contents.pages.pop(p, None)

    def write(self, addr: int, data: bytes) -> None:
        """Record a store the harness made into writable memory; marks the mapping touched."""
        if not self.is_writable(addr, addr + len(data)):
            raise ValueError(f"model: {len(data)} bytes at {addr:#x} are not writable")
        if self.is_guarded(addr, addr + len(data)):
            raise ValueError(f"model: {len(data)} bytes at {addr:#x} hit a guard page")
        # The kernel attaches one anon_vma per mapping on first fault: the whole VMA
        # counts as touched, which decides whether a later PROT_NONE refunds the charge.
        self._mark_touched(addr, addr + len(data))
        pos = 0
        while pos < len(data):
            p = (addr + pos) - (addr + pos) % self.page
            n = min(p + self.page - (addr + pos), len(data) - pos)
            chunk = data[pos : pos + n]
            if p in self.either:
                off = addr + pos - p
                for cand in self.either[p]:
                    cand[off : off + n] = chunk
            else:
                self.contents.write(addr + pos, chunk)
            pos += n

    def candidates(self, addr: int, n: int) -> list[bytes]:
        """Every byte string a read of ``[addr, addr + n)`` may return (droppable memory
        may also have been dropped to zeros)."""
        outs: list[bytes] = [b""]
        pos = 0
        while pos < n:
            p = (addr + pos) - (addr + pos) % self.page
            off = addr + pos - p
            take = min(self.page - off, n - pos)
            if p in self.either:
                parts = {bytes(c[off : off + take]) for c in self.either[p]}
            else:
                known = self.contents.expected(addr + pos, take)
                assert known is not None
                parts = {known}
                vma = self.vmas.get(p)
                if vma is not None and vma.has("dp"):
                    parts.add(bytes(take))
            outs = sorted({o + part for o in outs for part in parts})
            pos += take
        return outs

    def expected(self, addr: int, n: int) -> bytes | None:
        """The bytes a read must return, or None where the kernel may choose."""
        options = self.candidates(addr, n)
        return options[0] if len(options) == 1 else None
