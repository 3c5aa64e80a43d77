"""WindowsVMMachine: raw VirtualAlloc / VirtualAlloc2 / VirtualFree / VirtualProtect /
VirtualQuery held to the Windows model.

Each rule makes one kernel32 call through the Windows backend's ctypes shapes, makes the
same call on the model, and compares return value and last error exactly. After every
step, a VirtualQuery walk over every live allocation must equal the model's regions.

A backend that is not Windows may answer differently only where a row of
``arenacheck.backends.wine_allowances`` for that backend names the exact call, the model's
prediction and the backend's answer; such a step records a label (a Hypothesis event)
naming the row. Every other difference fails.

Safety: calls only ever name addresses inside the machine's own allocations, or inside
ranges it released that the OS confirms are still free (another allocator in the process
may take a released range at once); Windows refuses any call that spans two allocations,
so a range running past the end of ours cannot touch a neighbour.
"""

from __future__ import annotations

import copy
import ctypes
import dataclasses
import itertools
from typing import Any, ClassVar

from arenacheck.backends.registry import open_backend
from arenacheck.backends.wine_allowances import (
    IN_ALLOCATION,
    IN_FREE_MEMORY,
    INSIDE_ONE_ALLOCATION,
    LOWEST_GIVEN,
    NO_ADDRESS,
    NOT_ALL_COMMITTED,
    NOT_INSIDE_ONE_ALLOCATION,
    PROTECTION_CHECK,
    RESERVED_PROTECTIONS_DIFFER,
    SAME_PROTECTION_RUN,
    Allowance,
    Answer,
    AsWindowsWith,
    Call,
    Counterfactual,
    aborting_label,
    aborting_shape,
    allowance_for,
    allowance_label,
    kernel_name,
)
from arenacheck.impl.win_backend import WindowsBackend
from arenacheck.impl.win_kernel32 import DWORD, AddressRequirementsParameter
from arenacheck.machines.labels import label
from arenacheck.machines.oracle import expect, expect_commit_charge, fail, pattern
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
from arenacheck.model.arith import round_down, round_up
from arenacheck.model.geometry import geometry_named
from arenacheck.model.intervals import IntervalMap
from arenacheck.model.win_constants import (
    AT_ROUND_TO_PAGE,
    ERROR_INVALID_ADDRESS,
    ERROR_INVALID_PARAMETER,
    ERROR_NOT_ENOUGH_MEMORY,
    MEM_COMMIT,
    MEM_DECOMMIT,
    MEM_FREE,
    MEM_RELEASE,
    MEM_RESERVE,
    MEM_RESET,
    MEM_TOP_DOWN,
    MEM_WRITE_WATCH,
    PAGE_EXECUTE,
    PAGE_EXECUTE_READ,
    PAGE_EXECUTE_READWRITE,
    PAGE_EXECUTE_WRITECOPY,
    PAGE_GUARD,
    PAGE_NOACCESS,
    PAGE_NOCACHE,
    PAGE_READONLY,
    PAGE_READWRITE,
    PAGE_WRITECOMBINE,
    PAGE_WRITECOPY,
    SIZEOF_MEMORY_BASIC_INFORMATION,
)
from arenacheck.model.win_vm import (
    AddressRequirements,
    ExtendedParameter,
    MemoryBasicInformation,
    ProtectResult,
    WindowsVM,
    WinResult,
)
from arenacheck.record.trace import traced
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    invariant,
    multiple,
    precondition,
    rule,
)

VALID_PROTECTS = (
    PAGE_NOACCESS,
    PAGE_READONLY,
    PAGE_READWRITE,
    PAGE_EXECUTE,
    PAGE_EXECUTE_READ,
    PAGE_EXECUTE_READWRITE,
    PAGE_READWRITE | PAGE_GUARD,
)
INVALID_PROTECTS = (0, PAGE_WRITECOPY, PAGE_EXECUTE_WRITECOPY, PAGE_READONLY | PAGE_EXECUTE)
RESERVE_TYPES = (MEM_RESERVE, MEM_RESERVE | MEM_COMMIT, MEM_COMMIT, MEM_RESERVE | MEM_TOP_DOWN)
BAD_ALLOC_TYPES = (
    0,
    MEM_DECOMMIT,
    MEM_RESERVE | MEM_COMMIT | AT_ROUND_TO_PAGE,
    MEM_WRITE_WATCH,
    MEM_RESET | MEM_COMMIT,
)
BAD_FREE_TYPES = (0, MEM_FREE, MEM_DECOMMIT | MEM_RELEASE, 0x80000)
# VirtualProtect's new protections: the accepted ones, the cache attributes (which follow
# the allocation, A.1 notes [T]) and the refused ones (A.7 12, 19 [T]; modifier rules [D]).
PROTECT_CHOICES = (
    *VALID_PROTECTS,
    PAGE_READONLY | PAGE_NOCACHE,
    PAGE_READWRITE | PAGE_WRITECOMBINE,
    *INVALID_PROTECTS,
    PAGE_NOACCESS | PAGE_GUARD,
    PAGE_READWRITE | PAGE_GUARD | PAGE_NOCACHE,
    PAGE_READWRITE | PAGE_NOCACHE | PAGE_WRITECOMBINE,
)
# MEM_ADDRESS_REQUIREMENTS.Alignment without a window: 0 (the granularity: VirtualAlloc's
# own answer), valid powers of two up to the oxc container's 4 GiB, and refused ones (A.6).
ALIGNMENTS = (0, 0x10000, 0x40000, 0x200000, 1 << 32, 0x8000, 0x30000)
# A window over a released range: Lowest at its base, one page above it (not 64 KiB
# aligned: 87) or at the granule-rounded end (above Highest: 87); Highest below that end by
# 1 (ends on ...FFFF), 0x1001 (a page boundary below) or 2 (no page boundary: 87) (A.6).
WINDOW_LOWEST = ("base", "base", "base", "unaligned", "above highest")
WINDOW_HIGHEST = (1, 1, 0x1001, 2)
WINDOW_ALIGNMENTS = (0, 0x10000, 0x20000, 0x8000)
# The reservation's size inside the window: all of it, one page, and more than fits (8).
WINDOW_SIZES = ("window", "page", "window + granule")
# The "below the granularity" offsets VirtualFree accepts as "at the base" (A.2 [T]).
RELEASE_OFFSETS = (0, 1, 0xFFF, 0x1000, 0x1001)


def judge(
    backend: str,
    wine_version: str | None,
    call: Call,
    what: str,
    answered: Answer,
    predicted: Answer,
    counterfactual: Counterfactual | None = None,
) -> Allowance | None:
    """None when the backend answered as the model predicts; else the allowance excusing it.

    Raises Divergence when they differ and no row of the allowance table covers the call,
    the prediction and the answer exactly; rows apply only where the kernel32 is Wine's
    (``wine_version`` not None). The last error is compared only when the model predicts a
    failure: a successful call leaves it alone.
    """
    if answered.matches(predicted):
        return None
    allowance = allowance_for(wine_version, call, predicted, answered, counterfactual)
    if allowance is None:
        kernel = kernel_name(wine_version)
        fail(
            f"{what}: {backend} answered {answered}; the model predicts {predicted} "
            f"(kernel32 of {kernel}; {call.situation}; no allowance covers it)"
        )
    return allowance


def alloc2_call(situation: str, size: int, kind: int, r: AddressRequirements) -> Call:
    """A VirtualAlloc2 with one MEM_ADDRESS_REQUIREMENTS, in the terms rows match on."""
    args = (
        ("size", size),
        ("alloc_type", kind),
        ("lowest", r.lowest),
        (LOWEST_GIVEN, int(r.lowest != 0)),
        ("highest", r.highest),
        ("alignment", r.alignment),
    )
    return Call("VirtualAlloc2", situation, args)


def range_situation(model: WindowsVM, addr: int, size: int) -> str:
    """Whether the pages of ``[addr, addr + size)`` lie inside one allocation of ``model``."""
    if addr == 0:
        return NO_ADDRESS
    lo, hi = round_down(addr, model.page), round_up(addr + size, model.page)
    alloc = model.allocation_at(lo)
    inside = alloc is not None and hi <= alloc.end
    return INSIDE_ONE_ALLOCATION if inside else NOT_INSIDE_ONE_ALLOCATION


def protect_situation(model: WindowsVM, addr: int, size: int) -> str:
    """range_situation, with the ranges inside one allocation that are not all committed
    told apart: VirtualProtect's answer there is 487 (A.1 notes)."""
    situation = range_situation(model, addr, size)
    lo, hi = round_down(addr, model.page), round_up(addr + size, model.page)
    if situation == INSIDE_ONE_ALLOCATION and not model.is_committed(lo, hi):
        return NOT_ALL_COMMITTED
    return situation


def predict_alloc2(
    model: WindowsVM, address: int, size: int, kind: int, r: AddressRequirements, placed: int
) -> WinResult:
    """The model's VirtualAlloc2, granting the OS its pick (``placed``, 0: none) where
    several bases fit; a pick the requirements forbid gets the model's own (A.6)."""
    params = ExtendedParameter.requiring(r)
    if placed:
        try:
            return model.virtual_alloc2(
                address, size, kind, PAGE_READWRITE, params, 1, chosen_base=placed
            )
        except ValueError:
            pass
    return model.virtual_alloc2(address, size, kind, PAGE_READWRITE, params, 1)


def mbi_fields(mbi: object) -> MemoryBasicInformation:
    return MemoryBasicInformation(
        int(getattr(mbi, "BaseAddress", 0) or 0),
        int(getattr(mbi, "AllocationBase", 0) or 0),
        int(getattr(mbi, "AllocationProtect", 0)),
        int(getattr(mbi, "RegionSize", 0)),
        int(getattr(mbi, "State", 0)),
        int(getattr(mbi, "Protect", 0)),
        int(getattr(mbi, "Type", 0)),
    )


class WindowsVMMachine(RuleBasedStateMachine):
    backend_name: ClassVar[str] = "win32-emulated"
    geometry_name: ClassVar[str] = "small"

    regions = Bundle("regions")
    released = Bundle("released")

    def __init__(self) -> None:
        super().__init__()
        backend = open_backend(self.backend_name)
        assert isinstance(backend, WindowsBackend)
        self.backend = backend
        self.k32 = backend.k32
        self.geometry = geometry_named(self.geometry_name, backend.page, backend.granularity)
        self.model = WindowsVM(
            page=backend.page,
            granularity=backend.granularity,
            min_address=backend.min_address,
            max_address=backend.max_address,
        )
        self.numbers = itertools.count()
        # The protection each page of a live allocation was last reserved or committed
        # with. Windows forgets it on decommit; Wine keeps it, and VirtualQuery under Wine
        # splits reserved pages by it (see arenacheck.backends.wine_allowances).
        self.given_protect: IntervalMap[int] = IntervalMap()
        # The model after the last counterfactual call, adopted when a row says the backend
        # did what Windows does for that call.
        self.counterfactual_model: WindowsVM | None = None
        # Other code in the process allocates too (the stand-in reports the host's other
        # mappings as allocations), so a free gap can end earlier than the model says.
        self.exact_free_sizes = False
        self.sizes = named_sizes(self.model.page, self.geometry.reserved_size)

    # ---------------------------------------------------------------- helpers

    def safe(self, region: Region, lo: int, hi: int, changes_memory: bool = True) -> bool:
        """Whether a call on ``[lo, hi)`` can touch nothing but ``region``.

        Parts outside the region must be free in the OS right now: a model bug then costs
        a failed comparison, never another allocation of this process. A call reaching into
        the region is refused by the OS unless it stays inside one allocation, so a
        neighbour taken meanwhile costs nothing; a call entirely outside it would act on
        whatever took the range, and where the backend acts in this process the
        interpreter may take it between the check and the call, so that call is not made.
        """
        hi = max(hi, lo + 1)
        end = region.base + region.size
        outside_only = hi <= region.base or lo >= end
        if changes_memory and outside_only and self.backend.acts_in_this_process:
            label("call on memory entirely outside ours, in this process: call skipped")
            return False
        outside = [(lo, min(hi, region.base)), (max(lo, end), hi)]
        if all(self.range_is_available(a, b) for a, b in outside if a < b):
            return True
        label("range reaches another allocation: call skipped")
        return False

    def taken_meanwhile(
        self,
        lo: int,
        hi: int,
        got: tuple[int, int],
        want: WinResult,
        refusal: int = ERROR_INVALID_ADDRESS,
    ) -> bool:
        """A reservation the model grants but the OS refuses as taken (``refusal``: 487 at an
        address, 8 for a window), and that the OS now shows taken: another allocator of the
        process got there between check and call.

        The model knows only this machine's allocations, so it cannot predict that; the
        OS's own view, read after the call, is the evidence. The model's grant is undone.
        """
        if not want.ok or got[0] or got[1] != refusal:
            return False
        if self.range_is_free_in_os(lo, hi):
            return False
        self.model.virtual_free(want.value, 0, MEM_RELEASE)
        label("reserve: the range was taken by another allocation meanwhile")
        return True

    def range_is_available(self, lo: int, hi: int) -> bool:
        """Free in the OS, and not held by anything VirtualQuery cannot see.

        Under Wine, VirtualQuery reports memory Wine holds for itself as free; the Wine
        process's own Linux view says what that is. On Windows VirtualQuery sees everything.
        """
        if not self.range_is_free_in_os(lo, hi):
            return False
        if self.backend.hidden_mappings(lo, hi):
            label("range held by Wine itself, free to VirtualQuery: call skipped")
            return False
        return True

    def page_situation(self, addr: int) -> str:
        """The page at ``addr`` in the model, before the call (see wine_allowances)."""
        page = round_down(addr, self.model.page)
        return IN_FREE_MEMORY if self.model.allocation_at(page) is None else IN_ALLOCATION

    def range_situation(self, addr: int, size: int) -> str:
        return range_situation(self.model, addr, size)

    def alloc_call(self, addr: int, size: int, kind: int, protect: int) -> Call:
        args = (("size", size), ("alloc_type", kind), ("protect", protect))
        return Call("VirtualAlloc", self.range_situation(addr, size), args)

    def free_call(self, addr: int, size: int, kind: int) -> Call:
        args = (("size", size), ("free_type", kind))
        return Call("VirtualFree", self.page_situation(addr), args)

    def query_call(self, want: MemoryBasicInformation) -> Call:
        """A VirtualQuery, with how far the pages from its address keep their given protection."""
        if want.state == MEM_FREE:
            return Call("VirtualQuery", IN_FREE_MEMORY, ())
        end = want.base_address + want.region_size
        runs = self.given_protect.segments(want.base_address, end)
        first = runs[0].value
        run = want.base_address
        for segment in runs:
            if segment.value != first:
                break
            run = segment.end
        if want.state == MEM_RESERVE and run < end:
            facts = ((SAME_PROTECTION_RUN, run - want.base_address),)
            return Call("VirtualQuery", RESERVED_PROTECTIONS_DIFFER, (), facts)
        return Call("VirtualQuery", IN_ALLOCATION, ())

    def alloc_counterfactual(self, addr: int, size: int, kind: int, protect: int) -> Counterfactual:
        """The model's answer to this VirtualAlloc with one argument changed, on a copy."""

        def evaluate(argument: str, value: int) -> Answer:
            args = {"address": addr, "size": size, "alloc_type": kind, "protect": protect}
            if argument not in args:
                raise ValueError(f"VirtualAlloc has no argument {argument!r}")
            args[argument] = value
            scratch = copy.deepcopy(self.model)
            result = scratch.virtual_alloc(
                args["address"], args["size"], args["alloc_type"], args["protect"]
            )
            self.counterfactual_model = scratch
            return Answer(result.value, result.error)

        return evaluate

    def protect_counterfactual(
        self, addr: int, size: int, protect: int, old_out: bool, outcomes: list[ProtectResult]
    ) -> Counterfactual:
        """The model's answer to this VirtualProtect with one argument changed, on a copy;
        each evaluation's whole result (the old protection too) is appended to ``outcomes``."""

        def evaluate(argument: str, value: int) -> Answer:
            if argument not in ("protect", PROTECTION_CHECK):
                raise ValueError(f"VirtualProtect has no argument {argument!r} to change")
            scratch = copy.deepcopy(self.model)
            if argument == "protect":
                result = scratch.virtual_protect(addr, size, value, old_out)
            else:
                result = scratch.virtual_protect(addr, size, protect, old_out, bool(value))
            outcomes.append(result)
            self.counterfactual_model = scratch
            return Answer(result.value, result.error)

        return evaluate

    def compare(
        self,
        call: Call,
        what: str,
        got: tuple[int, int],
        want: WinResult,
        counterfactual: Counterfactual | None = None,
    ) -> None:
        """The backend's answer against the model's, through the allowance table."""
        self.counterfactual_model = None
        answered, predicted = Answer(got[0], got[1]), Answer(want.value, want.error)
        allowance = judge(
            self.backend.name,
            self.backend.wine_version,
            call,
            what,
            answered,
            predicted,
            counterfactual,
        )
        if allowance is None:
            return
        label(allowance_label(self.backend.wine_version, allowance))
        rule = allowance.instead
        if isinstance(rule, AsWindowsWith):
            # The backend did what Windows does for the changed call: so does the model now
            # (evaluated again, so that the copy is this row's whatever else was evaluated).
            assert counterfactual is not None
            counterfactual(rule.argument, rule.value)
            assert self.counterfactual_model is not None
            self.model = self.counterfactual_model
        self.counterfactual_model = None

    def alloc2(
        self, address: int, size: int, kind: int, protect: int, r: AddressRequirements
    ) -> tuple[int, int]:
        """VirtualAlloc2 through the backend with one MEM_ADDRESS_REQUIREMENTS parameter."""
        # VirtualAlloc2 is no member of the Kernel32 protocol: not every kernel32 has it.
        k32: Any = self.k32
        alloc2: Any = k32.VirtualAlloc2
        param = AddressRequirementsParameter(r.lowest, r.highest, r.alignment)
        return self.backend.call(
            alloc2, None, address or None, size, kind, protect, ctypes.byref(param), 1
        )

    def alloc2_call(self, address: int, size: int, kind: int, r: AddressRequirements) -> Call:
        return alloc2_call(self.range_situation(address, size), size, kind, r)

    def alloc2_counterfactual(
        self,
        before: WindowsVM,
        address: int,
        size: int,
        kind: int,
        r: AddressRequirements,
        placed: int,
    ) -> Counterfactual:
        """The model's answer to this VirtualAlloc2 with one requirement changed, on a copy
        of the model as it was ``before`` the call (the prediction may have reserved)."""

        def evaluate(argument: str, value: int) -> Answer:
            if argument not in ("lowest", "highest", "alignment"):
                raise ValueError(f"VirtualAlloc2 has no requirement {argument!r} to change")
            changed = dataclasses.replace(r, **{argument: value})
            scratch = copy.deepcopy(before)
            result = predict_alloc2(scratch, address, size, kind, changed, placed)
            if result.ok and not placed:
                # The changed window may reach memory the model does not know: the OS's
                # refusal stands if the OS's own view holds no aligned fit there either.
                lo, hi = scratch.requirement_window(changed)
                align = changed.alignment or scratch.granularity
                if not self.os_has_room(lo, hi, round_up(size, scratch.page), align):
                    scratch = copy.deepcopy(before)
                    result = WinResult(0, ERROR_NOT_ENOUGH_MEMORY)
            self.counterfactual_model = scratch
            return Answer(result.value, result.error)

        return evaluate

    def hand_back(self, base: int) -> None:
        """Release an allocation no bundle tracks, as the model does."""
        back = self.free_call(base, 0, MEM_RELEASE)
        want = self.model.virtual_free(base, 0, MEM_RELEASE)
        got = self.backend.call(self.k32.VirtualFree, base, 0, MEM_RELEASE)
        self.compare(back, "VirtualFree(handed back)", got, want)

    def give_protect(self, lo: int, hi: int, protect: int | None) -> None:
        self.given_protect.set(lo, hi, protect)

    def looks_like(self, region: Region) -> bool:
        """Whether the OS shows an allocation with ``region``'s base and size at its base."""
        ret, _, mbi = self.backend.virtual_query(region.base)
        if ret == 0 or mbi.State == MEM_FREE or int(mbi.AllocationBase or 0) != region.base:
            return False
        end = region.base
        while end < region.base + region.size:
            ret, _, mbi = self.backend.virtual_query(end)
            if ret == 0 or int(mbi.AllocationBase or 0) != region.base:
                return False
            end = int(mbi.BaseAddress or 0) + int(mbi.RegionSize)
        ret, _, mbi = self.backend.virtual_query(end)
        return ret == 0 or int(mbi.AllocationBase or 0) != region.base

    def range_is_free_in_os(self, lo: int, hi: int) -> bool:
        addr = lo
        while addr < hi:
            ret, _, mbi = self.backend.virtual_query(addr)
            if ret == 0 or mbi.State != MEM_FREE:
                return False
            addr = int(mbi.BaseAddress or 0) + int(mbi.RegionSize)
        return True

    def os_has_room(self, lo: int, hi: int, size: int, align: int) -> bool:
        """Whether the OS's view holds ``size`` free bytes on an ``align`` boundary inside
        ``[lo, hi)``, memory Wine keeps for itself excluded."""
        addr = lo
        while addr < hi:
            ret, _, mbi = self.backend.virtual_query(addr)
            if ret == 0:
                return False
            start = int(mbi.BaseAddress or 0)
            end = min(start + int(mbi.RegionSize), hi)
            base = round_up(max(start, lo), align)
            fits = mbi.State == MEM_FREE and base + size <= end
            if fits and not self.backend.hidden_mappings(base, base + size):
                return True
            addr = start + int(mbi.RegionSize)
        return False

    # ------------------------------------------------------------------ rules

    @precondition(lambda self: len(self.model.allocations) < MAX_LIVE)
    @rule(
        target=regions,
        size=st.sampled_from(SIZE_NAMES),
        kind=st.sampled_from(RESERVE_TYPES),
        protect=st.sampled_from(VALID_PROTECTS),
    )
    @traced
    def reserve(self, size: str, kind: int, protect: int) -> Region:
        nbytes = self.sizes[size]
        if kind & MEM_COMMIT and nbytes > 0x30000:
            nbytes = 0x30000  # commit charge: never commit gigabytes from a raw machine
        got = self.backend.call(self.k32.VirtualAlloc, None, nbytes, kind, protect)
        if got[0] == 0:
            want = self.model.virtual_alloc(0, nbytes, kind, protect, chosen_base=None)
            fail(
                f"VirtualAlloc(NULL, {nbytes:#x}, {kind:#x}, {protect:#x}) failed with "
                f"{got[1]}; model predicts {want}"
            )
        call = self.alloc_call(0, nbytes, kind, protect)
        result = self.model.virtual_alloc(0, nbytes, kind, protect, chosen_base=got[0])
        self.compare(call, "VirtualAlloc(NULL)", got, result)
        self.give_protect(got[0], got[0] + self.model.allocations[got[0]].size, protect)
        label(f"reserve {'+commit' if kind & MEM_COMMIT else ''}")
        return Region(next(self.numbers), got[0], self.model.allocations[got[0]].size)

    @rule(
        size=st.sampled_from((0, 1 << 47)),
        kind=st.sampled_from(RESERVE_TYPES + BAD_ALLOC_TYPES),
        protect=st.sampled_from(VALID_PROTECTS + INVALID_PROTECTS),
    )
    @traced
    def reserve_refused(self, size: int, kind: int, protect: int) -> None:
        """Invalid sizes, types and protections: refused, nothing allocated (A.1 rows 1-5)."""
        call = self.alloc_call(0, size, kind, protect)
        want = self.model.virtual_alloc(0, size, kind, protect)
        expect(not want.ok, "model: a refused reserve was accepted")
        got = self.backend.call(self.k32.VirtualAlloc, None, size, kind, protect)
        if got[0]:
            self.backend.call(self.k32.VirtualFree, got[0], 0, MEM_RELEASE)
        self.compare(call, f"VirtualAlloc(NULL, {size:#x}, {kind:#x}, {protect:#x})", got, want)

    @rule(
        region=regions,
        offset=offsets(),
        length=lengths(),
        kind=st.sampled_from(
            (MEM_COMMIT, MEM_COMMIT, MEM_RESET, MEM_RESERVE, MEM_COMMIT | MEM_RESERVE)
        ),
        protect=st.sampled_from(VALID_PROTECTS + INVALID_PROTECTS[:2]),
    )
    @traced
    def alloc_at(
        self, region: Region, offset: Offset, length: Length, kind: int, protect: int
    ) -> None:
        """Commit, reset or reserve at an address in (or just past) an allocation of ours."""
        if region.base not in self.model.allocations:
            return
        addr = offset.resolve(region.base, region.size)
        size = length.resolve(addr, region.base, region.size)
        if size > 0x40000 and kind & MEM_COMMIT:
            size = 0x40000
        # A reservation starts at the allocation-granularity boundary below the address
        # (A.1): that whole range must be ours or free.
        lo = round_down(addr, self.model.granularity) if kind & MEM_RESERVE else addr
        # A reservation at a taken address is refused before anything is committed.
        if not self.safe(region, lo, addr + size, changes_memory=not kind & MEM_RESERVE):
            return
        call = self.alloc_call(addr, size, kind, protect)
        counterfactual = self.alloc_counterfactual(addr, size, kind, protect)
        want = self.model.virtual_alloc(addr, size, kind, protect)
        got = self.backend.call(self.k32.VirtualAlloc, addr, size, kind, protect)
        if kind & MEM_RESERVE and self.taken_meanwhile(lo, addr + size, got, want):
            return
        self.compare(
            call,
            f"VirtualAlloc(+{addr - region.base:#x}, {size:#x}, {kind:#x}, {protect:#x})",
            got,
            want,
            counterfactual,
        )
        if want.ok and kind & MEM_RESERVE:
            self.give_protect(want.value, self.model.allocations[want.value].end, protect)
        elif want.ok and kind & MEM_COMMIT:
            self.give_protect(want.value, round_up(addr + size, self.model.page), protect)
        label(f"alloc_at {kind:#x}: {'ok' if want.ok else want.error}")

    @rule(region=regions, offset=offsets(), length=lengths())
    @traced
    def decommit(self, region: Region, offset: Offset, length: Length) -> None:
        if region.base not in self.model.allocations:
            return
        addr = offset.resolve(region.base, region.size)
        size = length.resolve(addr, region.base, region.size)
        if not self.safe(region, addr, addr + size):
            return
        call = self.free_call(addr, size, MEM_DECOMMIT)
        want = self.model.virtual_free(addr, size, MEM_DECOMMIT)
        got = self.backend.call(self.k32.VirtualFree, addr, size, MEM_DECOMMIT)
        self.compare(
            call, f"VirtualFree(+{addr - region.base:#x}, {size:#x}, MEM_DECOMMIT)", got, want
        )
        label(f"decommit: {'ok' if want.ok else want.error}")

    @rule(region=regions, offset=st.sampled_from(RELEASE_OFFSETS), size=st.sampled_from((0, 0, 1)))
    @traced
    def release_misused(self, region: Region, offset: int, size: int) -> None:
        """MEM_RELEASE with a size, or away from the first page: refused (A.2 [T])."""
        if region.base not in self.model.allocations or (size == 0 and offset < 0x1000):
            return
        call = self.free_call(region.base + offset, size, MEM_RELEASE)
        want = self.model.virtual_free(region.base + offset, size, MEM_RELEASE)
        got = self.backend.call(self.k32.VirtualFree, region.base + offset, size, MEM_RELEASE)
        self.compare(call, f"VirtualFree(+{offset:#x}, {size}, MEM_RELEASE)", got, want)

    @rule(region=regions, kind=st.sampled_from(BAD_FREE_TYPES))
    @traced
    def free_bad_type(self, region: Region, kind: int) -> None:
        if region.base not in self.model.allocations:
            return
        call = self.free_call(region.base, 0, kind)
        want = self.model.virtual_free(region.base, 0, kind)
        got = self.backend.call(self.k32.VirtualFree, region.base, 0, kind)
        self.compare(call, f"VirtualFree(base, 0, {kind:#x})", got, want)
        expect(want.error == ERROR_INVALID_PARAMETER, "model: a bad free type was accepted")

    @rule(target=released, region=consumes(regions), offset=st.sampled_from((0, 1, 0xFFF)))
    @traced
    def release(self, region: Region, offset: int) -> Region:
        if region.base not in self.model.allocations:
            return region
        call = self.free_call(region.base + offset, 0, MEM_RELEASE)
        want = self.model.virtual_free(region.base + offset, 0, MEM_RELEASE)
        got = self.backend.call(self.k32.VirtualFree, region.base + offset, 0, MEM_RELEASE)
        self.compare(call, f"VirtualFree(+{offset:#x}, 0, MEM_RELEASE)", got, want)
        self.give_protect(region.base, region.base + region.size, None)
        if not self.range_is_free_in_os(region.base, region.base + region.size):
            expect(
                self.backend.acts_in_this_process and not self.looks_like(region),
                f"{region}: still allocated after MEM_RELEASE",
            )
            label("released range taken at once by another allocator of this process")
        return region

    @rule(region=released, kind=st.sampled_from((MEM_RELEASE, MEM_DECOMMIT)))
    @traced
    def free_released(self, region: Region, kind: int) -> None:
        """Releasing or decommitting freed memory: 487, while nobody took the range (A.2 [T])."""
        if self.backend.acts_in_this_process:
            # The interpreter may take the range between any check and the call.
            label("release or decommit of freed memory, in this process: call skipped")
            return
        if not self.range_is_available(region.base, region.base + region.size):
            label("released range reused by another allocation: call skipped")
            return
        if not self.model.is_free(region.base, region.base + region.size):
            return
        size = 0 if kind == MEM_RELEASE else 0x1000
        call = self.free_call(region.base, size, kind)
        want = self.model.virtual_free(region.base, size, kind)
        got = self.backend.call(self.k32.VirtualFree, region.base, size, kind)
        self.compare(call, f"VirtualFree(released, {size}, {kind:#x})", got, want)

    @rule(
        region=released,
        kind=st.sampled_from((MEM_RESERVE, MEM_RESERVE | MEM_COMMIT)),
        delta=st.sampled_from((0, 0x1000)),
    )
    @traced
    def reserve_at_released(self, region: Region, kind: int, delta: int) -> None:
        """Re-reserving just-released memory returns the same (rounded) address (A.7 17)."""
        if len(self.model.allocations) >= MAX_LIVE:
            return
        lo, hi = region.base, region.base + 0x2000
        if not self.model.is_free(lo, hi) or not self.range_is_available(lo, hi):
            label("released range reused: call skipped")
            return
        call = self.alloc_call(region.base + delta, 0x1000, kind, PAGE_READWRITE)
        want = self.model.virtual_alloc(region.base + delta, 0x1000, kind, PAGE_READWRITE)
        got = self.backend.call(
            self.k32.VirtualAlloc, region.base + delta, 0x1000, kind, PAGE_READWRITE
        )
        if self.taken_meanwhile(lo, hi, got, want):
            return
        self.compare(call, f"VirtualAlloc(released+{delta:#x}, 0x1000, {kind:#x})", got, want)
        if got[0]:
            # Hand it back at once: the bundle does not track it, the model does.
            back = self.free_call(got[0], 0, MEM_RELEASE)
            w = self.model.virtual_free(got[0], 0, MEM_RELEASE)
            g = self.backend.call(self.k32.VirtualFree, got[0], 0, MEM_RELEASE)
            self.compare(back, "VirtualFree(re-reserved)", g, w)

    @precondition(lambda self: len(self.model.allocations) < MAX_LIVE)
    @rule(
        target=regions,
        size=st.sampled_from(SIZE_NAMES),
        kind=st.sampled_from((MEM_RESERVE, MEM_RESERVE, MEM_RESERVE | MEM_COMMIT)),
        alignment=st.sampled_from(ALIGNMENTS),
    )
    @traced
    def reserve_aligned(self, size: str, kind: int, alignment: int) -> Any:
        """VirtualAlloc2 with an Alignment and no window: the OS picks, the model checks the
        pick is aligned and free, or predicts the refusal (A.6)."""
        nbytes = self.sizes[size]
        if kind & MEM_COMMIT and nbytes > 0x30000:
            nbytes = 0x30000  # commit charge: never commit gigabytes from a raw machine
        r = AddressRequirements(0, 0, alignment)
        row = aborting_shape(self.backend.wine_version, nbytes, alignment)
        if row is not None:
            label(aborting_label(self.backend.wine_version, row))
            return multiple()
        got = self.alloc2(0, nbytes, kind, PAGE_NOACCESS, r)
        params = ExtendedParameter.requiring(r)
        what = f"VirtualAlloc2(NULL, {nbytes:#x}, {kind:#x}, Alignment {alignment:#x})"
        try:
            want = self.model.virtual_alloc2(
                0, nbytes, kind, PAGE_NOACCESS, params, 1, chosen_base=got[0] or None
            )
        except ValueError as error:
            fail(f"{what} gave {got[0]:#x}: {error}")
        self.compare(self.alloc2_call(0, nbytes, kind, r), what, got, want)
        label(f"VirtualAlloc2 aligned: {'ok' if want.ok else want.error}")
        if not want.ok:
            return multiple()
        end = self.model.allocations[got[0]].end
        self.give_protect(got[0], end, PAGE_NOACCESS)
        return Region(next(self.numbers), got[0], end - got[0])

    @rule(
        region=released,
        lowest=st.sampled_from(WINDOW_LOWEST),
        highest=st.sampled_from(WINDOW_HIGHEST),
        alignment=st.sampled_from(WINDOW_ALIGNMENTS),
        size=st.sampled_from(WINDOW_SIZES),
        how=st.sampled_from((None, None, None, "top down", "base", "commit", "base commit")),
    )
    @traced
    def reserve_in_window(
        self,
        region: Region,
        lowest: str,
        highest: int,
        alignment: int,
        size: str,
        how: str | None,
    ) -> None:
        """VirtualAlloc2 with a window over a range we released: a base aligned, inside the
        window and free in the model (exact where one fits), 8 when nothing fits, 87 for bad
        requirements or a base address (A.6)."""
        if len(self.model.allocations) >= MAX_LIVE:
            return
        lo = region.base
        hi = round_up(region.end, self.model.granularity)
        if not self.model.is_free(lo, hi) or not self.range_is_available(lo, hi):
            label("released range reused: call skipped")
            return
        low = {"base": lo, "unaligned": lo + 0x1000, "above highest": hi}[lowest]
        r = AddressRequirements(low, hi - highest, alignment)
        window = hi - lo
        nbytes = {"window": window, "page": 0x1000, "window + granule": window + 0x10000}[size]
        address = region.base if how in ("base", "base commit") else 0
        # MEM_COMMIT alone with NULL reserves and commits (never gigabytes of commit charge);
        # with a base it would commit existing pages, which requirements refuse (87).
        commit = how in ("commit", "base commit") and nbytes <= 0x30000
        kind = MEM_COMMIT if commit else MEM_RESERVE | (MEM_TOP_DOWN if how == "top down" else 0)
        got = self.alloc2(address, nbytes, kind, PAGE_READWRITE, r)
        before = copy.deepcopy(self.model)
        want = predict_alloc2(self.model, address, nbytes, kind, r, got[0])
        if self.taken_meanwhile(lo, hi, got, want, ERROR_NOT_ENOUGH_MEMORY):
            return
        what = (
            f"VirtualAlloc2(+{address and address - region.base:#x}, {nbytes:#x}, {kind:#x}, "
            f"[+{r.lowest - lo:#x}, end-{hi - r.highest:#x}], Alignment {alignment:#x})"
        )
        counterfactual = self.alloc2_counterfactual(before, address, nbytes, kind, r, got[0])
        self.compare(self.alloc2_call(address, nbytes, kind, r), what, got, want, counterfactual)
        label(f"VirtualAlloc2 window: {'ok' if want.ok else want.error}")
        if got[0]:
            self.hand_back(got[0])

    @rule(
        region=regions,
        offset=offsets(),
        length=lengths(),
        protect=st.sampled_from(PROTECT_CHOICES),
        old_out=st.sampled_from((True, True, True, False)),
    )
    @traced
    def protect(
        self, region: Region, offset: Offset, length: Length, protect: int, old_out: bool
    ) -> None:
        """VirtualProtect: the old protection of the first page, the pages re-protected as
        VirtualQuery then shows; 487 unless committed and inside one allocation (A.1 notes)."""
        if region.base not in self.model.allocations:
            return
        addr = offset.resolve(region.base, region.size)
        # Size 0 is 87 by ReactOS only [R] (Wine answers as for one page): not drawn, so
        # that no unverified rule is held against a real kernel32.
        size = max(length.resolve(addr, region.base, region.size), 1)
        if not self.safe(region, addr, addr + size):
            return
        old = DWORD(0xA5A5A5A5)
        args = (("size", size), ("protect", protect), ("old_out", int(old_out)))
        call = Call("VirtualProtect", protect_situation(self.model, addr, size), args)
        want = self.model.virtual_protect(addr, size, protect, old_out)
        got = self.backend.call(
            self.k32.VirtualProtect, addr, size, protect, ctypes.byref(old) if old_out else None
        )
        what = f"VirtualProtect(+{addr - region.base:#x}, {size:#x}, {protect:#x})"
        outcomes: list[ProtectResult] = []
        counterfactual = self.protect_counterfactual(addr, size, protect, old_out, outcomes)
        predicted = self.model
        self.compare(call, what, got, WinResult(want.value, want.error), counterfactual)
        if self.model is not predicted:
            # A row's changed call stands for this one: so does its outcome (evaluated last).
            want = outcomes[-1]
        if want.ok:
            expect(
                old.value == want.old_protect,
                f"{what}: old protection {old.value:#x}, the model's {want.old_protect}",
            )
            lo = round_down(addr, self.model.page)
            page = self.model.state_of(lo)
            assert page is not None
            self.give_protect(lo, round_up(addr + size, self.model.page), page.protect)
        label(f"VirtualProtect: {'ok' if want.ok else want.error}")

    @rule(region=regions, offset=offsets(), seed=st.integers(0, 255))
    @traced
    def write_read(self, region: Region, offset: Offset, seed: int) -> None:
        """Bytes written to committed read-write pages read back; fresh commits read zero."""
        if region.base not in self.model.allocations:
            return
        addr = offset.resolve(region.base, region.size)
        data = pattern(seed, 16)
        lo, hi = addr, addr + len(data)
        if not (region.base <= lo and hi <= region.base + region.size):
            return
        if self.model.is_writable(lo, hi):
            expect(
                self.os_says_writable(lo, hi),
                f"{region}: OS shows +{lo - region.base:#x} not writable",
            )
            self.backend.write(lo, data)
            self.model.write(lo, data)
        readable = self.model.is_committed(lo, hi) and self.os_says_readable(lo, hi)
        if readable and all(self.readable_protect(a) for a in (lo, hi - 1)):
            want = self.model.expected(lo, len(data))
            if want is not None:
                got = self.backend.read(lo, len(data))
                expect(
                    got == want, f"{region}: bytes at +{lo - region.base:#x} differ from the model"
                )

    def readable_protect(self, addr: int) -> bool:
        page = self.model.state_of(addr)
        return page is not None and page.protect in (
            PAGE_READONLY,
            PAGE_READWRITE,
            PAGE_EXECUTE_READ,
            PAGE_EXECUTE_READWRITE,
        )

    def os_says_writable(self, lo: int, hi: int) -> bool:
        return all(
            s.state.value == "committed" and "w" in s.prot for s in self.backend.query(lo, hi)
        )

    def os_says_readable(self, lo: int, hi: int) -> bool:
        return all(
            s.state.value == "committed" and "r" in s.prot for s in self.backend.query(lo, hi)
        )

    @rule(region=st.one_of(regions, released), offset=offsets())
    @traced
    def query(self, region: Region, offset: Offset) -> None:
        addr = offset.resolve(region.base, region.size)
        want = self.model.virtual_query(addr)
        ret, err, mbi = self.backend.virtual_query(addr)
        expect(
            ret == want.value,
            f"VirtualQuery(+{addr - region.base:#x}) returned {ret}, model {want.value}",
        )
        if want.info is None:
            expect(err == want.error, f"VirtualQuery error {err}, model {want.error}")
            return
        got = mbi_fields(mbi)
        if want.info.state == MEM_FREE and got.state != MEM_FREE:
            # The model holds every allocation of ours, and release is checked the moment
            # it happens: what stands where the model sees free space belongs to others.
            label("query: another allocation where the model sees free space")
            return
        self.compare_mbi(f"VirtualQuery(+{addr - region.base:#x})", got, want.info)

    def compare_mbi(
        self, what: str, got: MemoryBasicInformation, want: MemoryBasicInformation
    ) -> None:
        if want.state == MEM_FREE and got.state == MEM_FREE and not self.exact_free_sizes:
            # The model sees only its own allocations: the real free gap can end earlier,
            # at an allocation made elsewhere in the process, never later.
            expect(
                0 < got.region_size <= want.region_size and got.region_size % self.model.page == 0,
                f"{what}: free RegionSize {got.region_size:#x} is beyond the model's "
                f"{want.region_size:#x}",
            )
            got = dataclasses.replace(got, region_size=want.region_size)
        size = SIZEOF_MEMORY_BASIC_INFORMATION
        answered, predicted = Answer(size, None, got), Answer(size, None, want)
        allowance = judge(
            self.backend.name,
            self.backend.wine_version,
            self.query_call(want),
            what,
            answered,
            predicted,
        )
        if allowance is not None:
            label(allowance_label(self.backend.wine_version, allowance))

    @rule(length=st.sampled_from((0, 47)))
    @traced
    def query_refused(self, length: int) -> None:
        """Above the user range: 0 with 87 (A.3 [D], Wine 87)."""
        want = self.model.virtual_query(self.model.max_address + 1)
        ret, err, _ = self.backend.virtual_query(self.model.max_address + 1)
        expect(
            (ret, err) == (want.value, want.error),
            f"VirtualQuery(max + 1) gave {ret}, {err}; model {want}",
        )

    # ------------------------------------------------------------- invariants

    @invariant()
    def os_regions_match_model(self) -> None:
        for alloc in list(self.model.allocations.values()):
            want = self.model.regions(alloc.base, alloc.end)
            addr = alloc.base
            for region in want:
                ret, err, mbi = self.backend.virtual_query(addr)
                expect(ret != 0, f"VirtualQuery({addr:#x}) failed with {err}")
                self.compare_mbi(f"walk at {addr:#x}", mbi_fields(mbi), region)
                addr += region.region_size

    @invariant()
    def emulation_matches_host(self) -> None:
        """The stand-in's commit charge is the model's, and its memory is the host's."""
        expect_commit_charge(
            self.k32,
            self.model.committed_bytes,
            [
                (f"allocation at {a.base:#x}", a.base, a.end)
                for a in self.model.allocations.values()
            ],
            "the model's allocations",
        )

    def teardown(self) -> None:
        for alloc in list(self.model.allocations.values()):
            self.model.virtual_free(alloc.base, 0, MEM_RELEASE)
            self.backend.call(self.k32.VirtualFree, alloc.base, 0, MEM_RELEASE)
