"""Reference model of mmap, mprotect, munmap and madvise (docs/VM_SEMANTICS.md B.1 and B.2).

Only anonymous private mappings are modelled. As with the Windows model, addresses the
model never mapped are holes in its world; a harness must only point calls that reach
outside its own mappings at ranges the OS confirms are unmapped.

Invariant: ``vmas`` holds one run per stretch of pages with equal flags; ``charged_bytes``
is the size of the runs with ``account`` set, which is what Linux adds to Committed_AS.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field, replace

from arenacheck.model.arith import MASK64, round_up
from arenacheck.model.contents import PageContents
from arenacheck.model.intervals import IntervalMap
from arenacheck.model.posix_constants import (
    EEXIST,
    EINVAL,
    ENOMEM,
    LINUX,
    MADV_DONTNEED,
    MADV_NORMAL,
    MADV_RANDOM,
    MADV_SEQUENTIAL,
    MADV_WILLNEED,
    MAP_FIXED,
    MAP_PRIVATE,
    MAP_SHARED,
    PROT_EXEC,
    PROT_NONE,
    PROT_READ,
    PROT_WRITE,
    PosixFlavor,
)
from arenacheck.model.spans import OsSpan, SpanState, merge_spans, prot_letters

MAP_FAILED = MASK64


class NotModelled(ValueError):
    """A call outside what the model predicts; a harness must not generate it."""


@dataclass(frozen=True)
class Vma:
    """Flags of a run of pages: protection plus the accounting bits of B.2."""

    prot: int
    noreserve: bool
    account: bool = False
    touched: bool = False

    @property
    def writable(self) -> bool:
        return bool(self.prot & PROT_WRITE)


@dataclass(frozen=True)
class PosixResult:
    """Return value and errno (``None`` on success: errno is left alone)."""

    value: int
    errno: int | None = None

    @property
    def ok(self) -> bool:
        return self.errno is None


@dataclass
class PosixVM:
    page: int = 4096
    flavor: PosixFlavor = LINUX
    overcommit_mode: int = 0
    task_size: int = (1 << 47) - 4096
    data_limit: int | None = None
    vmas: IntervalMap[Vma] = field(default_factory=IntervalMap)
    contents: PageContents = field(init=False)

    def __post_init__(self) -> None:
        self.contents = PageContents(self.page)

    # ---------------------------------------------------------------- queries

    @property
    def charged_bytes(self) -> int:
        return sum(r.size for r in self.vmas if r.value.account)

    @property
    def data_bytes(self) -> int:
        """Private writable bytes: what RLIMIT_DATA counts (B.2)."""
        return sum(r.size for r in self.vmas if r.value.writable)

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
        if not flags & anon or fd != -1:
            raise NotModelled("only anonymous mappings with fd -1 are modelled")
        if flags & MAP_SHARED:
            raise NotModelled("shared anonymous mappings are not modelled")
        if offset % self.page:
            return PosixResult(MAP_FAILED, EINVAL)
        if length == 0:
            return PosixResult(MAP_FAILED, EINVAL)
        size = round_up(length, self.page)
        if size > MASK64 or size > self.task_size:
            return PosixResult(MAP_FAILED, ENOMEM)
        if not flags & (MAP_PRIVATE | MAP_SHARED):
            return PosixResult(MAP_FAILED, EINVAL)
        fixed = bool(flags & (MAP_FIXED | noreplace))
        if fixed and addr % self.page:
            return PosixResult(MAP_FAILED, EINVAL)
        if fixed and addr + size > self.task_size:
            raise NotModelled("fixed mappings beyond the user address space are not modelled")
        noreserve = bool(flags & self.flavor.map_noreserve) and self.overcommit_mode != 2
        writable = bool(prot & PROT_WRITE)
        vma = Vma(
            # mmap ignores unknown protection bits rather than failing (B.1 [E]).
            self.shown_prot(prot & (PROT_READ | PROT_WRITE | PROT_EXEC)),
            noreserve,
            account=writable and not noreserve and self.flavor.accounts_commit,
        )
        if fixed:
            # The kernel turns NOREPLACE into FIXED and still refuses an overlap.
            if flags & noreplace and not self.is_unmapped(addr, addr + size):
                return PosixResult(MAP_FAILED, EEXIST)
            base = addr
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
        self.vmas.set(base, base + size, vma)
        self._share_anon_vma(base, base + size)
        self.contents.zero(base, base + size)
        return PosixResult(base)

    # --------------------------------------------------------------- mprotect

    def mprotect(self, addr: int, length: int, prot: int) -> PosixResult:
        """Applies to each mapping from ``addr`` up to the first hole, then ENOMEM (B.1)."""
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
        shown = self.shown_prot(prot)
        for seg in self.vmas.segments(addr, end):
            if seg.value is None:
                return PosixResult(-1, ENOMEM)
            new = self._reprotect(seg.value, shown)
            if new.writable and not seg.value.writable and self._data_over_limit(seg.size):
                return PosixResult(-1, ENOMEM)
            self.vmas.set(seg.start, seg.end, new)
            self._share_anon_vma(seg.start, seg.end)
        return PosixResult(0)

    def _share_anon_vma(self, lo: int, hi: int) -> None:
        """Pages that now merge with a touched neighbour share its anon_vma (B.1 merging).

        The kernel merges adjacent anonymous VMAs with equal flags when at most one has an
        anon_vma, and the merged VMA keeps it: the untouched side becomes "touched", which
        decides whether a later PROT_NONE refunds its charge (B.2).
        """
        changed = True
        while changed:
            changed = False
            runs = self.vmas.overlapping(lo - self.page, hi + self.page)
            for a, b in itertools.pairwise(runs):
                if a.end != b.start or a.value.touched == b.value.touched:
                    continue
                if replace(a.value, touched=True) != replace(b.value, touched=True):
                    continue
                untouched = a if not a.value.touched else b
                whole = self.vmas.run_at(untouched.start)
                assert whole is not None
                self.vmas.set(whole.start, whole.end, replace(whole.value, touched=True))
                lo, hi = min(lo, whole.start), max(hi, whole.end)
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
        """Holes inside the range are not an error (B.1)."""
        if addr % self.page or length == 0:
            return PosixResult(-1, EINVAL)
        if addr > self.task_size or length > self.task_size - addr:
            return PosixResult(-1, EINVAL)
        end = addr + round_up(length, self.page)
        self.vmas.set(addr, end, None)
        self.contents.zero(addr, end)
        return PosixResult(0)

    # ---------------------------------------------------------------- madvise

    def madvise(self, addr: int, length: int, advice: int) -> PosixResult:
        known = {
            MADV_NORMAL,
            MADV_RANDOM,
            MADV_SEQUENTIAL,
            MADV_WILLNEED,
            MADV_DONTNEED,
        }
        if addr % self.page or advice not in known:
            return PosixResult(-1, EINVAL)
        if length == 0:
            return PosixResult(0)
        end = addr + round_up(length, self.page)
        if end > MASK64 or end > self.task_size:
            raise NotModelled("madvise ranges beyond the user address space are not modelled")
        hole = False
        for seg in self.vmas.segments(addr, end):
            if seg.value is None:
                hole = True
            elif advice == MADV_DONTNEED:
                self.contents.zero(seg.start, seg.end)
            elif advice == self.flavor.madv_free:
                # The kernel may or may not have reclaimed the pages by the next read.
                self.contents.forget(seg.start, seg.end)
        if hole:
            return PosixResult(-1, self.flavor.madvise_hole_errno)
        return PosixResult(0)

    # --------------------------------------------------------------- contents

    def write(self, addr: int, data: bytes) -> None:
        """Record a store the harness made into writable memory; marks the mapping touched."""
        if not self.is_writable(addr, addr + len(data)):
            raise ValueError(f"model: {len(data)} bytes at {addr:#x} are not writable")
        for seg in self.vmas.overlapping(addr, addr + len(data)):
            # The kernel attaches one anon_vma per mapping on first fault: the whole VMA
            # counts as touched, which decides whether a later PROT_NONE refunds the charge.
            whole = self.vmas.run_at(seg.start)
            assert whole is not None
            self.vmas.set(whole.start, whole.end, replace(whole.value, touched=True))
        self.contents.write(addr, data)

    def expected(self, addr: int, n: int) -> bytes | None:
        return self.contents.expected(addr, n)
