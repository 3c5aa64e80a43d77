"""A kernel32 stand-in: the Windows model's answers, over real host memory.

It has the call shapes of the ctypes functions in ``arenacheck.impl.win_kernel32`` (arguments
converted as argtypes would, ``None`` for a NULL pointer result, the last error read
through ``get_last_error``), so ``arenacheck.impl.win_backend`` runs on it unchanged. Every result
and error code comes from ``arenacheck.model.win_vm.WindowsVM``; host memory (mmap on POSIX, the
real VirtualAlloc on Windows) only makes committed pages usable and uncommitted pages
fault, so the Windows code path reads and writes real memory.

Invariant: after every call, host protections equal what the model's page states say
(checked by :meth:`EmulatedKernel32.host_disagreements`).
"""

from __future__ import annotations

import ctypes
import dataclasses
import os
from typing import Any, Protocol

from arenacheck.impl.host import IS_WINDOWS
from arenacheck.impl.win_kernel32 import (
    MEM_ADDRESS_REQUIREMENTS,
    MEM_EXTENDED_PARAMETER,
    MEMORY_BASIC_INFORMATION,
    SYSTEM_INFO,
)
from arenacheck.model.arith import round_down, round_up
from arenacheck.model.spans import OsSpan, SpanState, merge_spans
from arenacheck.model.win_constants import (
    ALLOCATION_GRANULARITY,
    ERROR_INVALID_ADDRESS,
    ERROR_NOT_ENOUGH_MEMORY,
    MAX_APPLICATION_ADDRESS,
    MEM_COMMIT,
    MEM_DECOMMIT,
    MEM_EXTENDED_PARAMETER_ADDRESS_REQUIREMENTS,
    MEM_FREE,
    MEM_PRIVATE,
    MEM_RELEASE,
    MEM_RESERVE,
    MEM_RESET,
    MEM_TOP_DOWN,
    MIN_APPLICATION_ADDRESS,
    PAGE_EXECUTE,
    PAGE_EXECUTE_READ,
    PAGE_EXECUTE_READWRITE,
    PAGE_GUARD,
    PAGE_NOACCESS,
    PAGE_READONLY,
    PAGE_READWRITE,
    PAGE_SIZE,
    READABLE_PROTECTIONS,
    WRITABLE_PROTECTIONS,
)
from arenacheck.model.win_vm import (
    AddressRequirements,
    ExtendedParameter,
    MemoryBasicInformation,
    PageState,
    Unmodelled,
    WindowsVM,
    WinResult,
)

PROCESSOR_ARCHITECTURE_AMD64 = 9
# Host protections of foreign mappings, as Windows protection constants.
_FOREIGN_PROTECT = {
    "r--": PAGE_READONLY,
    "rw-": PAGE_READWRITE,
    "r-x": PAGE_EXECUTE_READ,
    "rwx": PAGE_EXECUTE_READWRITE,
    "--x": PAGE_EXECUTE,
}
_HOST_READ = 1
_HOST_WRITE = 2
# GetCurrentProcess()'s pseudo-handle; NULL means the current process too (A.6 [D]).
CURRENT_PROCESS = (1 << 64) - 1
# Candidates of a VirtualAlloc2 window the host is asked for before the stand-in gives up:
# each refusal is a foreign mapping of this process, which Windows would also step over.
WINDOW_PLACEMENT_TRIES = 64


class HostMemory(Protocol):
    page: int

    def reserve(self, size: int, align: int, skew: int = 0) -> int | None: ...

    def reserve_at(self, addr: int, size: int) -> bool: ...

    def protect(self, addr: int, size: int, prot: int) -> None: ...

    def discard(self, addr: int, size: int) -> None: ...

    def release(self, addr: int, size: int) -> None: ...

    def query(self, lo: int, hi: int) -> list[OsSpan]: ...


def default_host() -> HostMemory:
    if IS_WINDOWS:
        from arenacheck.backends.host_windows import WindowsHostMemory

        return WindowsHostMemory()
    from arenacheck.backends.host_posix import PosixHostMemory

    return PosixHostMemory()


def _convert(index: int, value: object, ctype: Any) -> int:
    """Convert one argument as ctypes' argtypes would, or raise ctypes.ArgumentError."""
    if value is None and ctype is ctypes.c_void_p:
        return 0
    if type(value) is not int and type(value) is not bool:
        # Real ctypes would pass a str as a pointer to its characters; refusing is safer.
        raise ctypes.ArgumentError(f"argument {index}: TypeError: wrong type")
    return int(ctype(value).value or 0)


def _host_prot(page: PageState | None) -> int | None:
    """Host protection a page needs; None when it is not committed."""
    if page is None or page.state != MEM_COMMIT:
        return None
    if page.protect & PAGE_GUARD:
        return 0
    base = page.protect & 0xFF
    if base in WRITABLE_PROTECTIONS:
        return _HOST_READ | _HOST_WRITE
    return _HOST_READ if base in READABLE_PROTECTIONS else 0


def _union(prots: list[int | None]) -> int | None:
    """The most permissive of several pages' host protections (None: none committed)."""
    committed = [p for p in prots if p is not None]
    if not committed:
        return None
    merged = 0
    for p in committed:
        merged |= p
    return merged


def _structure_behind(buffer: object, cls: type[ctypes.Structure], index: int) -> Any:
    """The structure a byref(), pointer() or the structure itself refers to."""
    if isinstance(buffer, cls):
        return buffer
    obj = getattr(buffer, "_obj", None)
    if isinstance(obj, cls):
        return obj
    contents = getattr(buffer, "contents", None)
    if isinstance(contents, cls):
        return contents
    raise ctypes.ArgumentError(f"argument {index}: TypeError: expected LP_{cls.__name__}")


def _address_of(buffer: object, index: int) -> int:
    """The address a pointer argument names: byref(), pointer(), a structure or an array."""
    if buffer is None:
        return 0
    if isinstance(buffer, ctypes.Structure | ctypes.Array):
        return ctypes.addressof(buffer)
    obj = getattr(buffer, "_obj", None)
    if isinstance(obj, ctypes.Structure | ctypes.Array | ctypes._SimpleCData):
        return ctypes.addressof(obj)
    contents = getattr(buffer, "contents", None)
    if isinstance(contents, ctypes.Structure | ctypes.Array | ctypes._SimpleCData):
        return ctypes.addressof(contents)
    raise ctypes.ArgumentError(f"argument {index}: TypeError: expected a pointer")


def _dword_behind(buffer: object, index: int) -> Any:
    """The 32-bit value a ``POINTER(DWORD)`` argument refers to; None for NULL."""
    if buffer is None:
        return None
    target = buffer if isinstance(buffer, ctypes._SimpleCData) else None
    for attr in ("_obj", "contents"):
        if target is None and isinstance(getattr(buffer, attr, None), ctypes._SimpleCData):
            target = getattr(buffer, attr)
    if target is None or ctypes.sizeof(target) != 4:
        raise ctypes.ArgumentError(f"argument {index}: TypeError: expected LP_c_ulong")
    return target


def extended_parameters(address: int, count: int) -> list[ExtendedParameter] | None:
    """The ``count`` MEM_EXTENDED_PARAMETERs at ``address``, as the model reads them."""
    if address == 0:
        return None
    raw = (MEM_EXTENDED_PARAMETER * count).from_address(address)
    out: list[ExtendedParameter] = []
    for param in raw:
        kind = int(param.Type) & 0xFF
        requirements = None
        if kind == MEM_EXTENDED_PARAMETER_ADDRESS_REQUIREMENTS and param.Pointer:
            r = MEM_ADDRESS_REQUIREMENTS.from_address(int(param.Pointer))
            requirements = AddressRequirements(
                int(r.LowestStartingAddress or 0),
                int(r.HighestEndingAddress or 0),
                int(r.Alignment),
            )
        out.append(ExtendedParameter(kind, requirements))
    return out


class EmulatedKernel32:
    """kernel32's VirtualAlloc, VirtualFree, VirtualQuery and GetSystemInfo, emulated, with
    KernelBase's VirtualAlloc2 and kernel32's VirtualProtect."""

    # The model predicts Windows, so the stand-in is Windows' kernel32, never Wine's.
    wine_version: str | None = None

    def __init__(self, host: HostMemory | None = None, commit_limit: int | None = None) -> None:
        self.host = host if host is not None else default_host()
        self.model = WindowsVM(
            page=PAGE_SIZE,
            granularity=ALLOCATION_GRANULARITY,
            min_address=MIN_APPLICATION_ADDRESS,
            max_address=MAX_APPLICATION_ADDRESS,
            commit_limit=commit_limit,
        )
        self._last_error = 0
        self.call_count = 0
        self._placements = 0

    # ------------------------------------------------------------ last error

    def get_last_error(self) -> int:
        return self._last_error

    def set_last_error(self, value: int) -> int:
        old, self._last_error = self._last_error, value & 0xFFFFFFFF
        return old

    def _result(self, result: WinResult) -> int:
        if result.error is not None:
            self._last_error = result.error
        return result.value

    # ----------------------------------------------------------- VirtualAlloc

    def VirtualAlloc(  # noqa: N802 - kernel32's name
        self, address: object, size: object, alloc_type: object, protect: object
    ) -> int | None:
        self.call_count += 1
        addr = _convert(1, address, ctypes.c_void_p)
        nbytes = _convert(2, size, ctypes.c_size_t)
        kind = _convert(3, alloc_type, ctypes.c_uint32)
        prot = _convert(4, protect, ctypes.c_uint32)
        error = self.model.alloc_parameter_error(addr, nbytes, kind, prot)
        if error is not None:
            self._last_error = error
            return None
        if kind & MEM_RESET:
            return self._result(self.model.virtual_alloc(addr, nbytes, kind, prot)) or None
        if addr == 0:
            return self._alloc_anywhere(nbytes, kind, prot)
        if kind & MEM_RESERVE:
            return self._alloc_at(addr, nbytes, kind, prot)
        result = self.model.virtual_alloc(addr, nbytes, kind, prot)
        if result.ok:
            self._sync(result.value, round_up(addr + nbytes, PAGE_SIZE))
        return self._result(result) or None

    def _alloc_anywhere(self, size: int, kind: int, prot: int) -> int | None:
        rounded = round_up(size, PAGE_SIZE)
        if rounded > self.model.max_address + 1 - self.model.min_address:
            self._last_error = ERROR_NOT_ENOUGH_MEMORY
            return None
        # Windows bases are 64 KiB-aligned and nothing more; a host kernel that aligns large
        # mappings further (Linux does, for transparent huge pages) would hide every bug
        # that only shows on a base that is not. Step through the 64 KiB slots of a 2 MiB
        # block, the same sequence for every stand-in, so replays see the same alignments.
        # Every fourth base is 4 GiB-aligned, as Windows may also hand out: bugs that show
        # only when R is already aligned (the container skipped by a whole alignment) then
        # show within a few reservations.
        k = self._placements
        self._placements += 1
        if k % 4 == 0:
            base = self.host.reserve(rounded, 1 << 32)
        else:
            base = self.host.reserve(
                rounded, ALLOCATION_GRANULARITY, (k * 7 % 32) * ALLOCATION_GRANULARITY
            )
        if base is None:
            self._last_error = ERROR_NOT_ENOUGH_MEMORY
            return None
        result = self.model.virtual_alloc(0, size, kind, prot, chosen_base=base)
        if not result.ok:
            self.host.release(base, rounded)
            return self._result(result) or None
        self._sync(base, base + rounded)
        return base

    def _alloc_at(self, addr: int, size: int, kind: int, prot: int) -> int | None:
        base = round_down(addr, ALLOCATION_GRANULARITY)
        end = round_up(addr + size, PAGE_SIZE)
        if not self.model.is_free(base, end):
            return self._result(self.model.virtual_alloc(addr, size, kind, prot)) or None
        if not self.host.reserve_at(base, end - base):
            # Something outside the model holds the range: to Windows, a conflict.
            self._last_error = ERROR_INVALID_ADDRESS
            return None
        result = self.model.virtual_alloc(addr, size, kind, prot)
        if not result.ok:
            self.host.release(base, end - base)
            return self._result(result) or None
        self._sync(base, end)
        return base

    # ---------------------------------------------------------- VirtualAlloc2

    def VirtualAlloc2(  # noqa: N802 - KernelBase's name
        self,
        process: object,
        address: object,
        size: object,
        alloc_type: object,
        protect: object,
        parameters: object,
        count: object,
    ) -> int | None:
        """VirtualAlloc2 of the current process; address requirements placed in the host."""
        handle = _convert(1, process, ctypes.c_void_p)
        addr = _convert(2, address, ctypes.c_void_p)
        nbytes = _convert(3, size, ctypes.c_size_t)
        kind = _convert(4, alloc_type, ctypes.c_uint32)
        prot = _convert(5, protect, ctypes.c_uint32)
        n = _convert(7, count, ctypes.c_uint32)
        if handle not in (0, CURRENT_PROCESS):
            raise Unmodelled("the stand-in models the current process only")
        params = extended_parameters(_address_of(parameters, 6), n) if n else None
        found = self.model.alloc2_check(addr, nbytes, kind, prot, params, n)
        if found is None:
            # No requirements that count: VirtualAlloc's answer, counted once.
            return self.VirtualAlloc(addr or None, nbytes, kind, prot)
        self.call_count += 1
        if isinstance(found, int):
            self._last_error = found
            return None
        rounded = round_up(nbytes, PAGE_SIZE)
        base = self._place(rounded, found, bool(kind & MEM_TOP_DOWN))
        if base is None:
            self._last_error = ERROR_NOT_ENOUGH_MEMORY
            return None
        result = self.model.virtual_alloc2(addr, nbytes, kind, prot, params, n, chosen_base=base)
        if not result.ok:
            self.host.release(base, rounded)
            return self._result(result) or None
        self._sync(base, base + rounded)
        return base

    def _place(self, size: int, r: AddressRequirements, top_down: bool) -> int | None:
        """Host memory for ``size`` bytes under ``r``: the host's choice without a window,
        else the model's lowest (top-down: highest) fit the host can map."""
        align = r.alignment or ALLOCATION_GRANULARITY
        lo, hi = self.model.requirement_window(r)
        if not r.lowest and not r.highest:
            base = self.host.reserve(size, align)
            if base is None or (base + size <= hi and self.model.is_free(base, base + size)):
                return base
            self.host.release(base, size)
            return None
        for _ in range(WINDOW_PLACEMENT_TRIES):
            base = self.model.pick_free_base(size, align, lo, hi, top_down)
            if base is None:
                return None
            if self.host.reserve_at(base, size):
                return base
            if top_down:
                hi = base + size - align
            else:
                lo = base + align
        return None

    # ---------------------------------------------------------- VirtualProtect

    def VirtualProtect(  # noqa: N802 - kernel32's name
        self, address: object, size: object, new_protect: object, old_protect: object
    ) -> int:
        self.call_count += 1
        addr = _convert(1, address, ctypes.c_void_p)
        nbytes = _convert(2, size, ctypes.c_size_t)
        prot = _convert(3, new_protect, ctypes.c_uint32)
        out = _dword_behind(old_protect, 4)
        result = self.model.virtual_protect(addr, nbytes, prot, out is not None)
        if not result.ok:
            self._last_error = result.error or 0
            return 0
        assert out is not None and result.old_protect is not None
        out.value = result.old_protect
        self._sync(round_down(addr, PAGE_SIZE), round_up(addr + nbytes, PAGE_SIZE))
        return result.value

    # ------------------------------------------------------------ VirtualFree

    def VirtualFree(self, address: object, size: object, free_type: object) -> int:  # noqa: N802
        self.call_count += 1
        addr = _convert(1, address, ctypes.c_void_p)
        nbytes = _convert(2, size, ctypes.c_size_t)
        kind = _convert(3, free_type, ctypes.c_uint32)
        target = self.model.allocation_at(round_down(addr, PAGE_SIZE))
        result = self.model.virtual_free(addr, nbytes, kind)
        if result.ok and target is not None:
            if kind == MEM_RELEASE:
                self.host.release(target.base, target.size)
            elif kind == MEM_DECOMMIT:
                lo = target.base if nbytes == 0 else round_down(addr, PAGE_SIZE)
                hi = target.end if nbytes == 0 else round_up(addr + nbytes, PAGE_SIZE)
                self._sync(lo, hi, discard=True)
        return self._result(result)

    # ----------------------------------------------------------- VirtualQuery

    def VirtualQuery(self, address: object, buffer: object, length: object) -> int:  # noqa: N802
        self.call_count += 1
        addr = _convert(1, address, ctypes.c_void_p)
        mbi = _structure_behind(buffer, MEMORY_BASIC_INFORMATION, 2)
        nbytes = _convert(3, length, ctypes.c_size_t)
        q = self.model.virtual_query(addr, nbytes)
        if q.info is None:
            self._last_error = q.error or 0
            return 0
        info = q.info if q.info.state != MEM_FREE else self._foreign_or_free(q.info)
        mbi.BaseAddress = info.base_address or None
        mbi.AllocationBase = info.allocation_base or None
        mbi.AllocationProtect = info.allocation_protect
        mbi.PartitionId = 0
        mbi.RegionSize = info.region_size
        mbi.State = info.state
        mbi.Protect = info.protect
        mbi.Type = info.type
        return q.value

    def _foreign_or_free(self, info: MemoryBasicInformation) -> MemoryBasicInformation:
        """Free space in the model may hold another mapping of the host process.

        Real Windows would report that memory as someone else's allocation, and a free
        region as ending where the next one starts; so does the stand-in, or a caller
        checking "is this range free?" would be told yes about memory it must not touch.
        """
        base = info.base_address
        spans = self.host.query(base, base + info.region_size)
        first = spans[0] if spans else None
        if first is None or first.state is SpanState.FREE:
            end = first.end if first is not None else base + info.region_size
            return dataclasses.replace(info, region_size=end - base)
        protect = _FOREIGN_PROTECT.get(first.prot, PAGE_NOACCESS)
        state = MEM_RESERVE if first.state is SpanState.RESERVED else MEM_COMMIT
        return MemoryBasicInformation(
            base,
            round_down(base, PAGE_SIZE),
            PAGE_NOACCESS,
            first.end - base,
            state,
            0 if state == MEM_RESERVE else protect,
            MEM_PRIVATE,
        )

    def GetSystemInfo(self, buffer: object) -> None:  # noqa: N802
        si = _structure_behind(buffer, SYSTEM_INFO, 1)
        si.wProcessorArchitecture = PROCESSOR_ARCHITECTURE_AMD64
        si.dwPageSize = PAGE_SIZE
        si.lpMinimumApplicationAddress = self.model.min_address
        si.lpMaximumApplicationAddress = self.model.max_address
        si.dwActiveProcessorMask = (1 << (os.cpu_count() or 1)) - 1
        si.dwNumberOfProcessors = os.cpu_count() or 1
        si.dwProcessorType = 8664
        si.dwAllocationGranularity = ALLOCATION_GRANULARITY

    # ------------------------------------------------------------ host memory

    def _host_runs(self, lo: int, hi: int) -> list[tuple[int, int, int | None, bool]]:
        """Host-page runs over ``[lo, hi)``: (start, end, host prot or None, in allocation)."""
        hp = self.host.page
        lo, hi = round_down(lo, hp), round_up(hi, hp)
        runs: list[tuple[int, int, int | None, bool]] = []

        def add(start: int, end: int, prot: int | None, allocated: bool) -> None:
            if runs and runs[-1][1] == start and runs[-1][2:] == (prot, allocated):
                runs[-1] = (runs[-1][0], end, prot, allocated)
            elif end > start:
                runs.append((start, end, prot, allocated))

        cursor = lo
        for seg in self.model.pages.segments(lo, hi):
            if seg.end <= cursor:
                continue
            first_whole = round_up(max(seg.start, cursor), hp)
            if first_whole > cursor:
                # A host page shared by several model pages: the most permissive wins,
                # so no committed emulated page ever faults.
                page_end = min(first_whole, hi)
                subs = self.model.pages.segments(cursor, page_end)
                merged = _union([_host_prot(s.value) for s in subs])
                add(cursor, page_end, merged, any(s.value is not None for s in subs))
                cursor = page_end
            last_whole = round_down(seg.end, hp)
            if last_whole > cursor:
                add(cursor, last_whole, _host_prot(seg.value), seg.value is not None)
                cursor = last_whole
        if cursor < hi:
            subs = self.model.pages.segments(cursor, hi)
            tail = _union([_host_prot(s.value) for s in subs])
            add(cursor, hi, tail, any(s.value is not None for s in subs))
        return runs

    def _sync(self, lo: int, hi: int, discard: bool = False) -> None:
        """Make host protections over ``[lo, hi)`` what the model's pages need."""
        for start, end, prot, allocated in self._host_runs(lo, hi):
            if not allocated:
                continue
            if prot is None:
                if discard:
                    self.host.discard(start, end - start)
            else:
                self.host.protect(start, end - start, prot)

    def expected_host_spans(self, lo: int, hi: int) -> list[OsSpan]:
        spans: list[OsSpan] = []
        for start, end, prot, allocated in self._host_runs(lo, hi):
            s, e = max(start, lo), min(end, hi)
            if not allocated:
                spans.append(OsSpan(s, e, SpanState.FREE))
            elif not prot:
                spans.append(OsSpan(s, e, SpanState.RESERVED))
            else:
                letters = ("r" if prot & _HOST_READ else "-") + ("w" if prot & _HOST_WRITE else "-")
                spans.append(OsSpan(s, e, SpanState.COMMITTED, letters + "-"))
        return merge_spans(spans)

    def host_disagreements(self, lo: int, hi: int) -> list[str]:
        """Where host memory differs from what the model's page states require."""
        actual = [
            OsSpan(s.start, s.end, SpanState.RESERVED)
            if s.state is SpanState.COMMITTED and s.prot == "---"
            else s
            for s in self.host.query(lo, hi)
        ]
        expected = self.expected_host_spans(lo, hi)
        if merge_spans(actual) == expected:
            return []
        return [f"host memory {_fmt(merge_spans(actual))} but the model needs {_fmt(expected)}"]

    def close(self) -> None:
        """Release host memory of every allocation the model still holds."""
        for alloc in list(self.model.allocations.values()):
            self.model.virtual_free(alloc.base, 0, MEM_RELEASE)
            self.host.release(alloc.base, alloc.size)


def _fmt(spans: list[OsSpan]) -> str:
    return "[" + ", ".join(f"{s.start:#x}-{s.end:#x} {s.state.value} {s.prot}" for s in spans) + "]"
