"""Reference model of the Windows VirtualAlloc family (docs/VM_SEMANTICS.md A.1 to A.6).

The model knows only the allocations made through it. Addresses it has not allocated
are "free" in its world; a harness comparing it with a real process must therefore
only ask about ranges it owns, or check first that a range is really free.

Invariant: every page of every allocation is in exactly one run of ``pages`` carrying
that allocation's base, state RESERVE (protect 0) or COMMIT (protect as committed), and
``committed_bytes`` equals the size of the COMMIT runs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from arenacheck.model.arith import MASK64, is_power_of_two, round_down, round_up
from arenacheck.model.contents import PageContents
from arenacheck.model.intervals import IntervalMap
from arenacheck.model.win_constants import (
    ALLOCATION_GRANULARITY,
    AT_ROUND_TO_PAGE,
    BASE_PROTECTIONS,
    CACHE_MODIFIERS,
    ERROR_BAD_LENGTH,
    ERROR_COMMITMENT_LIMIT,
    ERROR_INVALID_ADDRESS,
    ERROR_INVALID_PARAMETER,
    ERROR_NOACCESS,
    ERROR_NOT_ENOUGH_MEMORY,
    MAX_APPLICATION_ADDRESS,
    MEM_COMMIT,
    MEM_DECOMMIT,
    MEM_EXTENDED_PARAMETER_ADDRESS_REQUIREMENTS,
    MEM_EXTENDED_PARAMETER_INVALID_TYPE,
    MEM_EXTENDED_PARAMETER_MAX,
    MEM_FREE,
    MEM_PRIVATE,
    MEM_RELEASE,
    MEM_REPLACE_PLACEHOLDER,
    MEM_RESERVE,
    MEM_RESERVE_PLACEHOLDER,
    MEM_RESET,
    MEM_TOP_DOWN,
    MEM_WRITE_WATCH,
    MIN_APPLICATION_ADDRESS,
    PAGE_GUARD,
    PAGE_NOACCESS,
    PAGE_NOCACHE,
    PAGE_SIZE,
    PAGE_WRITECOMBINE,
    SIZEOF_MEMORY_BASIC_INFORMATION,
    WRITABLE_PROTECTIONS,
)

# Allocation-type bits VirtualAlloc accepts at all; anything else is 87 (A.1 row 4).
_KNOWN_ALLOC_BITS = MEM_COMMIT | MEM_RESERVE | MEM_RESET | MEM_TOP_DOWN | MEM_WRITE_WATCH


@dataclass(frozen=True)
class PageState:
    """What every page of one run shares; runs never merge across allocations."""

    alloc_base: int
    state: int
    protect: int


@dataclass(frozen=True)
class Allocation:
    base: int
    size: int
    alloc_protect: int

    @property
    def end(self) -> int:
        return self.base + self.size


@dataclass(frozen=True)
class WinResult:
    """A call's return value, and the last error it set (``None``: left unchanged)."""

    value: int
    error: int | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(frozen=True)
class MemoryBasicInformation:
    base_address: int
    allocation_base: int
    allocation_protect: int
    region_size: int
    state: int
    protect: int
    type: int


@dataclass(frozen=True)
class QueryResult:
    """VirtualQuery: the bytes written (48 or 0), the error, and the fields on success."""

    value: int
    error: int | None
    info: MemoryBasicInformation | None


def valid_protection(protect: int) -> bool:
    """Exactly one base protection, optionally one modifier, never on NOACCESS (A.1 row 3)."""
    base = protect & 0xFF
    modifiers = protect & ~0xFF
    if base not in BASE_PROTECTIONS:
        return False
    if modifiers & ~(PAGE_GUARD | PAGE_NOCACHE | PAGE_WRITECOMBINE):
        return False
    if bin(modifiers).count("1") > 1:
        return False
    return not (modifiers and base == PAGE_NOACCESS)


@dataclass(frozen=True)
class ProtectResult:
    """VirtualProtect: BOOL, the error, and the old protection written on success."""

    value: int
    error: int | None
    old_protect: int | None

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(frozen=True)
class AddressRequirements:
    """MEM_ADDRESS_REQUIREMENTS; 0 in a field means "not specified" (A.6 [D])."""

    lowest: int = 0
    highest: int = 0
    alignment: int = 0

    @property
    def specified(self) -> bool:
        return bool(self.lowest or self.highest or self.alignment)


@dataclass(frozen=True)
class ExtendedParameter:
    """One MEM_EXTENDED_PARAMETER: its Type, and for AddressRequirements what it points to."""

    type: int
    requirements: AddressRequirements | None = None

    @classmethod
    def requiring(cls, r: AddressRequirements) -> list[ExtendedParameter]:
        """The one-parameter list of a VirtualAlloc2 with address requirements ``r``."""
        return [cls(MEM_EXTENDED_PARAMETER_ADDRESS_REQUIREMENTS, r)]


class Unmodelled(ValueError):
    """A call the model deliberately does not predict (placeholders, NUMA nodes, ...)."""


def _fail(error: int) -> WinResult:
    return WinResult(0, error)


@dataclass
class WindowsVM:
    """The address space of one process as VirtualAlloc, VirtualFree and VirtualQuery see it."""

    page: int = PAGE_SIZE
    granularity: int = ALLOCATION_GRANULARITY
    min_address: int = MIN_APPLICATION_ADDRESS
    max_address: int = MAX_APPLICATION_ADDRESS
    commit_limit: int | None = None
    allocations: dict[int, Allocation] = field(default_factory=dict)
    pages: IntervalMap[PageState] = field(default_factory=IntervalMap)
    contents: PageContents = field(init=False)

    def __post_init__(self) -> None:
        self.contents = PageContents(self.page)

    # ----------------------------------------------------------------- queries

    @property
    def committed_bytes(self) -> int:
        """The process's commit charge from memory the model allocated (A.5)."""
        return sum(r.size for r in self.pages if r.value.state == MEM_COMMIT)

    def allocation_at(self, addr: int) -> Allocation | None:
        page = self.pages.get(addr)
        return None if page is None else self.allocations[page.alloc_base]

    def is_free(self, lo: int, hi: int) -> bool:
        return not self.pages.overlapping(lo, hi)

    def state_of(self, addr: int) -> PageState | None:
        return self.pages.get(addr)

    def is_committed(self, lo: int, hi: int) -> bool:
        segs = self.pages.segments(round_down(lo, self.page), round_up(hi, self.page))
        return all(s.value is not None and s.value.state == MEM_COMMIT for s in segs)

    def _commit_charge_of(self, lo: int, hi: int) -> int:
        """Bytes of ``[lo, hi)`` that are not yet committed (what committing them costs)."""
        return sum(
            s.size
            for s in self.pages.segments(lo, hi)
            if s.value is None or s.value.state != MEM_COMMIT
        )

    def _over_limit(self, extra: int) -> bool:
        return self.commit_limit is not None and self.committed_bytes + extra > self.commit_limit

    def _single_allocation(self, lo: int, hi: int) -> Allocation | None:
        """The one allocation holding every page of ``[lo, hi)``, if there is one."""
        first = self.allocation_at(lo)
        if first is None or hi > first.end:
            return None
        return first

    def pick_free_base(
        self,
        size: int,
        align: int | None = None,
        lo: int | None = None,
        hi: int | None = None,
        top_down: bool = False,
    ) -> int | None:
        """Lowest (``top_down``: highest) ``align``-aligned base of ``size`` free bytes
        inside ``[lo, hi)``, as a stand-in OS would pick; default: granularity, user space."""
        align = self.granularity if align is None else align
        lo = self.min_address if lo is None else lo
        hi = self.max_address + 1 if hi is None else hi
        if top_down:
            candidate = round_down(hi - size, align)
            while candidate >= lo and candidate + size <= hi:
                blocking = self.pages.overlapping(candidate, candidate + size)
                if not blocking:
                    return candidate
                candidate = round_down(blocking[0].start - size, align)
            return None
        candidate = round_up(lo, align)
        while candidate + size <= hi:
            blocking = self.pages.overlapping(candidate, candidate + size)
            if not blocking:
                return candidate
            candidate = round_up(blocking[-1].end, align)
        return None

    # ------------------------------------------------------------ VirtualAlloc

    def virtual_alloc(
        self,
        address: int,
        size: int,
        alloc_type: int,
        protect: int,
        chosen_base: int | None = None,
    ) -> WinResult:
        """VirtualAlloc. ``chosen_base``: where the OS placed a NULL-address reservation."""
        error = self.alloc_parameter_error(address, size, alloc_type, protect)
        if error is not None:
            return _fail(error)
        if alloc_type & MEM_RESET:
            return self._reset(address, size)
        if address == 0:
            return self._reserve_anywhere(size, alloc_type, protect, chosen_base)
        end = round_up(address + size, self.page)
        if alloc_type & MEM_RESERVE:
            base = round_down(address, self.granularity)
            return self._reserve_at(base, end - base, alloc_type, protect)
        return self._commit(round_down(address, self.page), end, protect)

    def alloc_parameter_error(
        self, address: int, size: int, alloc_type: int, protect: int
    ) -> int | None:
        """The error VirtualAlloc reports before looking at address-space state (A.1 rows 1-5)."""
        if size == 0:
            return ERROR_INVALID_PARAMETER
        if alloc_type & ~_KNOWN_ALLOC_BITS or alloc_type & AT_ROUND_TO_PAGE:
            return ERROR_INVALID_PARAMETER
        if not alloc_type & (MEM_COMMIT | MEM_RESERVE | MEM_RESET):
            return ERROR_INVALID_PARAMETER
        if alloc_type & MEM_RESET and alloc_type & ~MEM_RESET:
            return ERROR_INVALID_PARAMETER
        if alloc_type & MEM_WRITE_WATCH and not alloc_type & MEM_RESERVE:
            return ERROR_INVALID_PARAMETER
        if not valid_protection(protect):
            return ERROR_INVALID_PARAMETER
        if address == 0:
            if alloc_type & MEM_RESET:
                return ERROR_INVALID_PARAMETER
            # The range [0, size) must end inside user space (A.1 row 5: Wine's limit check,
            # ReactOS "Region size would overflow into kernel-memory"); a size that passes
            # but fits in no free range is row 7's 8, decided when the range is placed.
            if round_up(size, self.page) > self.max_address + 1:
                return ERROR_INVALID_PARAMETER
            return None
        if address < self.min_address:
            return ERROR_INVALID_PARAMETER
        end = round_up(address + size, self.page)
        if end > self.max_address + 1 or end > MASK64:
            return ERROR_INVALID_PARAMETER
        return None

    def _reserve_anywhere(
        self, size: int, alloc_type: int, protect: int, chosen_base: int | None
    ) -> WinResult:
        rounded = round_up(size, self.page)
        if rounded > self.max_address + 1 - self.min_address:
            return _fail(ERROR_NOT_ENOUGH_MEMORY)
        base = self.pick_free_base(rounded) if chosen_base is None else chosen_base
        if base is None:
            return _fail(ERROR_NOT_ENOUGH_MEMORY)
        if base % self.granularity or not self.is_free(base, base + rounded):
            raise ValueError(
                f"the OS placed {rounded:#x} bytes at {base:#x}, which the model holds"
            )
        return self._reserve_at(base, rounded, alloc_type | MEM_RESERVE, protect)

    def _reserve_at(self, base: int, size: int, alloc_type: int, protect: int) -> WinResult:
        if not self.is_free(base, base + size):
            return _fail(ERROR_INVALID_ADDRESS)
        commit = bool(alloc_type & MEM_COMMIT)
        if commit and self._over_limit(size):
            return _fail(ERROR_COMMITMENT_LIMIT)
        self.allocations[base] = Allocation(base, size, protect)
        state = PageState(base, MEM_COMMIT, protect) if commit else PageState(base, MEM_RESERVE, 0)
        self.pages.set(base, base + size, state)
        self.contents.zero(base, base + size)
        return WinResult(base)

    def _commit(self, base: int, end: int, protect: int) -> WinResult:
        alloc = self._single_allocation(base, end)
        if alloc is None:
            return _fail(ERROR_INVALID_ADDRESS)
        if self._over_limit(self._commit_charge_of(base, end)):
            return _fail(ERROR_COMMITMENT_LIMIT)
        for seg in self.pages.segments(base, end):
            if seg.value is None or seg.value.state != MEM_COMMIT:
                self.contents.zero(seg.start, seg.end)
        self.pages.set(base, end, PageState(alloc.base, MEM_COMMIT, protect))
        return WinResult(base)

    def _reset(self, address: int, size: int) -> WinResult:
        base = round_down(address, self.page)
        end = round_up(address + size, self.page)
        if self._single_allocation(base, end) is None:
            return _fail(ERROR_INVALID_ADDRESS)
        self.contents.forget(base, end)
        return WinResult(base)

    # ------------------------------------------------------------- VirtualFree

    def virtual_free(self, address: int, size: int, free_type: int) -> WinResult:
        """VirtualFree: kernelbase's size check, then NtFreeVirtualMemory (A.2)."""
        if free_type == MEM_RELEASE and size != 0:
            return _fail(ERROR_INVALID_PARAMETER)
        if free_type not in (MEM_DECOMMIT, MEM_RELEASE):
            return _fail(ERROR_INVALID_PARAMETER)
        base = round_down(address, self.page)
        if size:
            size = round_up(address + size, self.page) - base
        if base == 0:
            return _fail(ERROR_INVALID_PARAMETER)
        alloc = self.allocation_at(base)
        if alloc is None:
            return _fail(ERROR_INVALID_ADDRESS)
        if size == 0 and base != alloc.base:
            return _fail(ERROR_INVALID_ADDRESS)
        if size != 0 and base + size > alloc.end:
            return _fail(ERROR_INVALID_PARAMETER)
        if free_type == MEM_RELEASE:
            self.pages.set(alloc.base, alloc.end, None)
            self.contents.zero(alloc.base, alloc.end)
            del self.allocations[alloc.base]
            return WinResult(1)
        lo, hi = (alloc.base, alloc.end) if size == 0 else (base, base + size)
        self.pages.set(lo, hi, PageState(alloc.base, MEM_RESERVE, 0))
        self.contents.zero(lo, hi)
        return WinResult(1)

    # ----------------------------------------------------------- VirtualAlloc2

    def virtual_alloc2(
        self,
        address: int,
        size: int,
        alloc_type: int,
        protect: int,
        parameters: Sequence[ExtendedParameter] | None = None,
        count: int = 0,
        chosen_base: int | None = None,
    ) -> WinResult:
        """VirtualAlloc2 on the current process (A.6).

        Without address requirements (none given, or all fields 0) it is VirtualAlloc. With
        them the reservation is placed at the lowest (MEM_TOP_DOWN: highest) base in the
        window that is aligned and free in the model; ``chosen_base`` names the OS's choice
        instead, which must satisfy the same requirements.
        """
        found = self.alloc2_check(address, size, alloc_type, protect, parameters, count)
        if isinstance(found, int):
            return _fail(found)
        if found is None:
            return self.virtual_alloc(address, size, alloc_type, protect, chosen_base)
        rounded = round_up(size, self.page)
        lo, hi = self.requirement_window(found)
        align = found.alignment or self.granularity
        if chosen_base is None:
            base = self.pick_free_base(rounded, align, lo, hi, bool(alloc_type & MEM_TOP_DOWN))
            if base is None:
                return _fail(ERROR_NOT_ENOUGH_MEMORY)
        else:
            base = chosen_base
            fits = base % align == 0 and lo <= base and base + rounded <= hi
            if not fits or not self.is_free(base, base + rounded):
                raise ValueError(
                    f"the OS placed {rounded:#x} bytes at {base:#x}, outside {found} or on "
                    "memory the model holds"
                )
        return self._reserve_at(base, rounded, alloc_type | MEM_RESERVE, protect)

    def alloc2_check(
        self,
        address: int,
        size: int,
        alloc_type: int,
        protect: int,
        parameters: Sequence[ExtendedParameter] | None,
        count: int,
    ) -> int | AddressRequirements | None:
        """VirtualAlloc2's refusals before placing (an error), else its address
        requirements (None: none that count, the call is VirtualAlloc's)."""
        if alloc_type & (MEM_RESERVE_PLACEHOLDER | MEM_REPLACE_PLACEHOLDER):
            raise Unmodelled("placeholders are not modelled")
        found = self.extended_parameter_error(parameters, count)
        if isinstance(found, int) or found is None or not found.specified:
            return found if isinstance(found, int) else None
        # Requirements place a new reservation: with a base, 87 [T] (MEM_COMMIT included:
        # committing existing pages takes their address); NULL with MEM_COMMIT alone
        # reserves too, as VirtualAlloc(NULL) does (A.1 [T]).
        if address != 0:
            return ERROR_INVALID_PARAMETER
        error = self.alloc_parameter_error(0, size, alloc_type, protect)
        return found if error is None else error

    def extended_parameter_error(
        self, parameters: Sequence[ExtendedParameter] | None, count: int
    ) -> int | AddressRequirements | None:
        """The error the extended parameters earn (A.6 [T]), else their address requirements."""
        if count == 0:
            return None
        if parameters is None or len(parameters) < count:
            return ERROR_INVALID_PARAMETER
        seen: set[int] = set()
        requirements: AddressRequirements | None = None
        for param in parameters[:count]:
            kind = param.type & 0xFF
            if kind == MEM_EXTENDED_PARAMETER_INVALID_TYPE or kind >= MEM_EXTENDED_PARAMETER_MAX:
                return ERROR_INVALID_PARAMETER
            if kind in seen:
                return ERROR_INVALID_PARAMETER
            seen.add(kind)
            if kind != MEM_EXTENDED_PARAMETER_ADDRESS_REQUIREMENTS:
                raise Unmodelled(f"extended parameter type {kind} is not modelled")
            if param.requirements is None:
                raise Unmodelled("a NULL MEM_ADDRESS_REQUIREMENTS pointer is not modelled")
            if self.requirements_error(param.requirements):
                return ERROR_INVALID_PARAMETER
            requirements = param.requirements
        return requirements

    def requirements_error(self, r: AddressRequirements) -> bool:
        """Whether MEM_ADDRESS_REQUIREMENTS is invalid (87): A.6 [T], [D]."""
        if r.alignment and (not is_power_of_two(r.alignment) or r.alignment < self.granularity):
            return True
        if r.lowest and (r.lowest % self.granularity or r.lowest > self.max_address):
            return True
        if r.highest and (r.highest > self.max_address or (r.highest + 1) % self.page):
            return True
        return bool(r.lowest and r.highest and r.lowest >= r.highest)

    def requirement_window(self, r: AddressRequirements) -> tuple[int, int]:
        """``[lo, hi)`` a reservation under ``r`` must lie in (HighestEndingAddress inclusive)."""
        lo = max(r.lowest, self.min_address)
        hi = (r.highest or self.max_address) + 1
        return lo, hi

    # ---------------------------------------------------------- VirtualProtect

    def virtual_protect(
        self,
        address: int,
        size: int,
        new_protect: int,
        old_protect_out: bool = True,
        check_protection: bool = True,
    ) -> ProtectResult:
        """VirtualProtect on private memory (A.1 notes, A.7 3-6, 12, 19, 20).

        ``old_protect_out`` False: lpflOldProtect is NULL. On success the pages of
        ``[address, address + size)`` take ``new_protect`` (with the allocation's cache
        attribute in place of the argument's) and the first page's protection is returned.
        ``check_protection`` False answers what Windows would do were ``new_protect``
        valid: a counterfactual for a kernel32 that does not check it (Windows always does).
        """
        if not old_protect_out:
            return ProtectResult(0, ERROR_NOACCESS, None)
        if check_protection and not valid_protection(new_protect):
            return ProtectResult(0, ERROR_INVALID_PARAMETER, None)
        base = round_down(address, self.page)
        end = round_up(address + size, self.page)
        # Size 0 is refused outright ([R] NtProtectVirtualMemory "0 is also illegal"), and
        # so is a range beyond user space ([R] STATUS_INVALID_PARAMETER_2/_3).
        if size == 0 or end > self.max_address + 1 or end > MASK64:
            return ProtectResult(0, ERROR_INVALID_PARAMETER, None)
        if self._single_allocation(base, end) is None or not self.is_committed(base, end):
            return ProtectResult(0, ERROR_INVALID_ADDRESS, None)
        first = self.pages.get(base)
        assert first is not None
        alloc = self.allocations[first.alloc_base]
        cache = alloc.alloc_protect & CACHE_MODIFIERS
        applied = (new_protect & ~CACHE_MODIFIERS) | cache
        self.pages.set(base, end, PageState(alloc.base, MEM_COMMIT, applied))
        return ProtectResult(1, None, first.protect)

    # ------------------------------------------------------------ VirtualQuery

    def virtual_query(
        self, address: int, length: int = SIZEOF_MEMORY_BASIC_INFORMATION
    ) -> QueryResult:
        if address > self.max_address:
            return QueryResult(0, ERROR_INVALID_PARAMETER, None)
        if length < SIZEOF_MEMORY_BASIC_INFORMATION:
            return QueryResult(0, ERROR_BAD_LENGTH, None)
        base = round_down(address, self.page)
        run = self.pages.run_at(base)
        if run is None:
            nxt = self.pages.next_start_at_or_after(base)
            end = self.max_address + 1 if nxt is None else nxt
            info = MemoryBasicInformation(base, 0, 0, end - base, MEM_FREE, PAGE_NOACCESS, 0)
        else:
            alloc = self.allocations[run.value.alloc_base]
            info = MemoryBasicInformation(
                base,
                alloc.base,
                alloc.alloc_protect,
                run.end - base,
                run.value.state,
                run.value.protect,
                MEM_PRIVATE,
            )
        return QueryResult(SIZEOF_MEMORY_BASIC_INFORMATION, None, info)

    def regions(self, lo: int, hi: int) -> list[MemoryBasicInformation]:
        """What a VirtualQuery walk from ``lo`` reports up to ``hi`` (last region clipped)."""
        out: list[MemoryBasicInformation] = []
        addr = lo
        while addr < hi:
            q = self.virtual_query(addr)
            if q.info is None:
                break
            out.append(q.info)
            addr += q.info.region_size
        return out

    # --------------------------------------------------------------- contents

    def is_writable(self, lo: int, hi: int) -> bool:
        segs = self.pages.segments(lo, hi)
        return all(
            s.value is not None
            and s.value.state == MEM_COMMIT
            and s.value.protect in WRITABLE_PROTECTIONS
            for s in segs
        )

    def write(self, addr: int, data: bytes) -> None:
        """Record a store the harness made into committed read-write memory."""
        if not self.is_writable(addr, addr + len(data)):
            raise ValueError(f"model: {len(data)} bytes at {addr:#x} are not committed read-write")
        self.contents.write(addr, data)

    def expected(self, addr: int, n: int) -> bytes | None:
        return self.contents.expected(addr, n)
