"""The Windows model (``model.win_vm.WindowsVM``) against docs/VM_SEMANTICS.md A.1 to A.5.

Every test pins one fact; facts tagged [T] were asserted by Wine's conformance tests on
real Windows. The A.5 tests pin the commit-limit rules the model implements.
"""

from __future__ import annotations

from itertools import combinations

import pytest
from arenacheck.model.intervals import Run
from arenacheck.model.win_constants import (
    AT_ROUND_TO_PAGE,
    ERROR_COMMITMENT_LIMIT,
    ERROR_INVALID_ADDRESS,
    ERROR_INVALID_PARAMETER,
    ERROR_NOACCESS,
    ERROR_NOT_ENOUGH_MEMORY,
    MEM_COMMIT,
    MEM_DECOMMIT,
    MEM_FREE,
    MEM_PRIVATE,
    MEM_RELEASE,
    MEM_RESERVE,
    MEM_RESET,
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
    PAGE_WRITECOPY,
)
from arenacheck.model.win_vm import (
    AddressRequirements,
    Allocation,
    ExtendedParameter,
    MemoryBasicInformation,
    PageState,
    ProtectResult,
    WindowsVM,
    WinResult,
)

MBI_SIZE = 48
BLOCK = 0x10000
BASE_PROTECTIONS = [
    PAGE_NOACCESS,
    PAGE_READONLY,
    PAGE_READWRITE,
    PAGE_EXECUTE,
    PAGE_EXECUTE_READ,
    PAGE_EXECUTE_READWRITE,
]
INVALID_PROTECTIONS = [
    0,
    PAGE_WRITECOPY,
    PAGE_EXECUTE_WRITECOPY,
    PAGE_READWRITE | PAGE_EXECUTE_WRITECOPY,
    *(a | b for a, b in combinations(BASE_PROTECTIONS, 2)),
]

Snapshot = tuple[list[Run[PageState]], dict[int, Allocation], int]


@pytest.fixture
def vm() -> WindowsVM:
    return WindowsVM()


def ok(result: WinResult, value: int) -> None:
    """Assert a call succeeded, returned ``value`` and set no last error."""
    assert (result.value, result.error) == (value, None)


def failed(result: WinResult, error: int) -> None:
    """Assert a call returned NULL / FALSE with last error ``error``."""
    assert (result.value, result.error) == (0, error)


def alloc(vm: WindowsVM, size: int, kind: int = MEM_RESERVE, protect: int = PAGE_NOACCESS) -> int:
    """VirtualAlloc(NULL, size, kind, protect), which must succeed at a 64 KiB boundary."""
    result = vm.virtual_alloc(0, size, kind, protect)
    assert result.error is None
    assert result.value != 0
    assert result.value % BLOCK == 0
    return result.value


def query(vm: WindowsVM, address: int) -> MemoryBasicInformation:
    """VirtualQuery(address), which must succeed and write sizeof(MBI) bytes."""
    result = vm.virtual_query(address)
    assert (result.value, result.error) == (MBI_SIZE, None)
    assert result.info is not None
    return result.info


def mbi(
    base: int, alloc_base: int, alloc_protect: int, size: int, state: int, protect: int
) -> MemoryBasicInformation:
    """The query result for a page of VirtualAlloc (MEM_PRIVATE) memory."""
    return MemoryBasicInformation(
        base, alloc_base, alloc_protect, size, state, protect, MEM_PRIVATE
    )


def snapshot(vm: WindowsVM) -> Snapshot:
    """Everything a failed call must leave unchanged."""
    return list(vm.pages), dict(vm.allocations), vm.committed_bytes


def half_committed(vm: WindowsVM) -> int:
    """A 64 KiB NOACCESS reservation whose first page is committed NOACCESS."""
    p = alloc(vm, BLOCK)
    ok(vm.virtual_alloc(p, 0x1000, MEM_COMMIT, PAGE_NOACCESS), p)
    return p


def assert_free(vm: WindowsVM, address: int) -> None:
    """The [T] fields of a MEM_FREE page (RegionSize is only [W])."""
    info = query(vm, address)
    assert info.base_address == address
    assert info.state == MEM_FREE
    assert info.protect == PAGE_NOACCESS
    assert info.allocation_base == 0
    assert info.allocation_protect == 0
    assert info.type == 0


# ------------------------------------------------------------------ A.1 VirtualAlloc


def test_alloc_zero_size_fails_87(vm: WindowsVM) -> None:
    """A.1 row 1 [T]: VirtualAlloc(NULL, 0, MEM_RESERVE, PAGE_NOACCESS) -> NULL, 87."""
    failed(vm.virtual_alloc(0, 0, MEM_RESERVE, PAGE_NOACCESS), ERROR_INVALID_PARAMETER)
    assert snapshot(vm) == ([], {}, 0)


@pytest.mark.parametrize("kind", [MEM_RESERVE, MEM_COMMIT], ids=["reserve", "commit"])
def test_alloc_zero_protection_fails_87(vm: WindowsVM, kind: int) -> None:
    """A.1 row 2 [T]: VirtualAlloc(NULL, 0x1000, MEM_RESERVE or MEM_COMMIT, 0) -> NULL, 87."""
    failed(vm.virtual_alloc(0, 0x1000, kind, 0), ERROR_INVALID_PARAMETER)
    assert snapshot(vm) == ([], {}, 0)


@pytest.mark.parametrize("protect", INVALID_PROTECTIONS, ids=hex)
def test_alloc_invalid_protection_fails_87(vm: WindowsVM, protect: int) -> None:
    """A.1 row 3 [T]: protection 0, two base values, WRITECOPY, EXECUTE_WRITECOPY -> 87."""
    failed(vm.virtual_alloc(0, 0x1000, MEM_RESERVE | MEM_COMMIT, protect), ERROR_INVALID_PARAMETER)
    assert snapshot(vm) == ([], {}, 0)


def test_commit_readonly_or_execute_fails_87(vm: WindowsVM) -> None:
    """A.1 row 3 [T]: VirtualAlloc(p, 0x1000, MEM_COMMIT, PAGE_READONLY|PAGE_EXECUTE) -> 87."""
    p = alloc(vm, BLOCK)
    before = snapshot(vm)
    failed(
        vm.virtual_alloc(p, 0x1000, MEM_COMMIT, PAGE_READONLY | PAGE_EXECUTE),
        ERROR_INVALID_PARAMETER,
    )
    assert snapshot(vm) == before
    assert query(vm, p) == mbi(p, p, PAGE_NOACCESS, BLOCK, MEM_RESERVE, 0)


@pytest.mark.parametrize("protect", BASE_PROTECTIONS, ids=hex)
def test_alloc_valid_protection_reported_verbatim(vm: WindowsVM, protect: int) -> None:
    """A.1 row 3 [T]: each base protection is accepted, echoed in Protect and AllocationProtect."""
    p = alloc(vm, 0x1000, MEM_RESERVE | MEM_COMMIT, protect)
    assert query(vm, p) == mbi(p, p, protect, 0x1000, MEM_COMMIT, protect)
    assert vm.committed_bytes == 0x1000


def test_alloc_at_round_to_page_fails_87(vm: WindowsVM) -> None:
    """A.1 row 4 [T]: MEM_RESERVE|MEM_COMMIT|AT_ROUND_TO_PAGE -> NULL, 87."""
    kind = MEM_RESERVE | MEM_COMMIT | AT_ROUND_TO_PAGE
    failed(vm.virtual_alloc(0, 0x1000, kind, PAGE_READWRITE), ERROR_INVALID_PARAMETER)
    assert snapshot(vm) == ([], {}, 0)


def test_alloc_write_watch_alone_fails_87(vm: WindowsVM) -> None:
    """A.1 row 4 [T]: VirtualAlloc(NULL, 0x1000, MEM_WRITE_WATCH, PAGE_READWRITE) -> NULL, 87."""
    failed(vm.virtual_alloc(0, 0x1000, MEM_WRITE_WATCH, PAGE_READWRITE), ERROR_INVALID_PARAMETER)
    assert snapshot(vm) == ([], {}, 0)


@pytest.mark.parametrize("protect", BASE_PROTECTIONS, ids=hex)
def test_reserve_write_watch_succeeds(vm: WindowsVM, protect: int) -> None:
    """A.1 row 4 [T]: MEM_RESERVE|MEM_WRITE_WATCH succeeds with any initial protection."""
    p = alloc(vm, BLOCK, MEM_RESERVE | MEM_WRITE_WATCH, protect)
    assert query(vm, p) == mbi(p, p, protect, BLOCK, MEM_RESERVE, 0)
    assert vm.committed_bytes == 0


def test_null_commit_makes_a_reservation(vm: WindowsVM) -> None:
    """A.1 [T]: VirtualAlloc(NULL, 0x2000, MEM_COMMIT, RW) -> new allocation based at the result."""
    p = alloc(vm, 0x2000, MEM_COMMIT, PAGE_READWRITE)
    assert query(vm, p) == mbi(p, p, PAGE_READWRITE, 0x2000, MEM_COMMIT, PAGE_READWRITE)
    assert vm.allocations == {p: Allocation(p, 0x2000, PAGE_READWRITE)}
    assert vm.committed_bytes == 0x2000


def test_null_reserve_0xfffc_is_page_rounded(vm: WindowsVM) -> None:
    """A.1 [T]: VirtualAlloc(NULL, 0xFFFC, MEM_RESERVE, NOACCESS) -> RegionSize 0x10000."""
    p = alloc(vm, 0xFFFC)
    assert query(vm, p) == mbi(p, p, PAGE_NOACCESS, 0x10000, MEM_RESERVE, 0)
    assert vm.committed_bytes == 0


def test_null_reserve_0x2000_is_not_granularity_rounded(vm: WindowsVM) -> None:
    """A.1 [T]: VirtualAlloc(NULL, 0x2000, MEM_RESERVE, ...) -> RegionSize 0x2000."""
    p = alloc(vm, 0x2000)
    assert query(vm, p) == mbi(p, p, PAGE_NOACCESS, 0x2000, MEM_RESERVE, 0)
    assert vm.allocations == {p: Allocation(p, 0x2000, PAGE_NOACCESS)}


@pytest.mark.parametrize(
    "kind", [MEM_RESERVE, MEM_RESERVE | MEM_COMMIT], ids=["reserve", "reserve_commit"]
)
def test_reserve_inside_allocated_block_fails_487(vm: WindowsVM, kind: int) -> None:
    """A.1 row 6 [T]: reserve at addr1+0x1000 inside addr1's 64 KiB block -> NULL, 487."""
    p = alloc(vm, BLOCK, MEM_RESERVE | MEM_COMMIT, PAGE_READWRITE)
    before = snapshot(vm)
    failed(vm.virtual_alloc(p + 0x1000, 0x1000, kind, PAGE_READWRITE), ERROR_INVALID_ADDRESS)
    assert snapshot(vm) == before


def test_commit_noaccess_is_committed_and_charged(vm: WindowsVM) -> None:
    """A.1 row 11 [T]: MEM_COMMIT with PAGE_NOACCESS -> MEM_COMMIT, Protect NOACCESS, charged."""
    p = alloc(vm, 0xFFFC)
    ok(vm.virtual_alloc(p, 0x1000, MEM_COMMIT, PAGE_NOACCESS), p)
    assert query(vm, p) == mbi(p, p, PAGE_NOACCESS, 0x1000, MEM_COMMIT, PAGE_NOACCESS)
    assert vm.committed_bytes == 0x1000


def test_reset_committed_page_keeps_state(vm: WindowsVM) -> None:
    """A.1 row 12 [T]: VirtualAlloc(p, 0x1000, MEM_RESET, NOACCESS) -> p; still COMMIT/RW."""
    p = alloc(vm, BLOCK)
    ok(vm.virtual_alloc(p, 0x1000, MEM_COMMIT, PAGE_READWRITE), p)
    ok(vm.virtual_alloc(p, 0x1000, MEM_RESET, PAGE_NOACCESS), p)
    assert query(vm, p) == mbi(p, p, PAGE_NOACCESS, 0x1000, MEM_COMMIT, PAGE_READWRITE)
    assert vm.committed_bytes == 0x1000


def test_reset_reserved_page_keeps_state(vm: WindowsVM) -> None:
    """A.1 row 12 [T]: MEM_RESET of reserved p+0x1000 -> p+0x1000; {0xF000, RESERVE, 0}."""
    p = half_committed(vm)
    ok(vm.virtual_alloc(p + 0x1000, 0x1000, MEM_RESET, PAGE_NOACCESS), p + 0x1000)
    assert query(vm, p + 0x1000) == mbi(p + 0x1000, p, PAGE_NOACCESS, 0xF000, MEM_RESERVE, 0)
    assert query(vm, p) == mbi(p, p, PAGE_NOACCESS, 0x1000, MEM_COMMIT, PAGE_NOACCESS)
    assert vm.committed_bytes == 0x1000


def test_reset_past_allocation_end_fails_487(vm: WindowsVM) -> None:
    """A.1 row 13 [T]: VirtualAlloc(p+0xF000, 0x2000, MEM_RESET, ...) -> NULL, 487."""
    p = half_committed(vm)
    before = snapshot(vm)
    failed(vm.virtual_alloc(p + 0xF000, 0x2000, MEM_RESET, PAGE_NOACCESS), ERROR_INVALID_ADDRESS)
    assert snapshot(vm) == before


def test_reserve_commit_at_released_address_returns_it(vm: WindowsVM) -> None:
    """A.1 row 14 [T]: after release, VirtualAlloc(same, 0x1000, RESERVE|COMMIT) -> same."""
    kind = MEM_RESERVE | MEM_COMMIT
    p = alloc(vm, 0x2000, kind, PAGE_EXECUTE_READWRITE)
    ok(vm.virtual_free(p, 0, MEM_RELEASE), 1)
    ok(vm.virtual_alloc(p, 0x1000, kind, PAGE_EXECUTE_READWRITE), p)
    erw = PAGE_EXECUTE_READWRITE
    assert query(vm, p) == mbi(p, p, erw, 0x1000, MEM_COMMIT, erw)
    assert vm.allocations == {p: Allocation(p, 0x1000, erw)}
    assert vm.committed_bytes == 0x1000


def test_reservation_keeps_protection_modifiers(vm: WindowsVM) -> None:
    """A.1 [T]: AllocationProtect is flProtect as passed (RW|NOCACHE); reserved Protect is 0."""
    rw_nocache = PAGE_READWRITE | PAGE_NOCACHE
    p = alloc(vm, 0x2000, MEM_RESERVE, rw_nocache)
    assert query(vm, p) == mbi(p, p, rw_nocache, 0x2000, MEM_RESERVE, 0)
    assert vm.committed_bytes == 0


def test_reserve_commit_pages_take_protection(vm: WindowsVM) -> None:
    """A.1 [T]: with MEM_COMMIT, every page is COMMITTED with Protect = flProtect (RW|NOCACHE)."""
    rw_nocache = PAGE_READWRITE | PAGE_NOCACHE
    p = alloc(vm, 0x2000, MEM_COMMIT, rw_nocache)
    assert query(vm, p) == mbi(p, p, rw_nocache, 0x2000, MEM_COMMIT, rw_nocache)
    assert vm.committed_bytes == 0x2000


def test_commit_guard_protection_reported(vm: WindowsVM) -> None:
    """A.1 note [T]: commit with RW|GUARD -> Protect and AllocationProtect both RW|GUARD."""
    rw_guard = PAGE_READWRITE | PAGE_GUARD
    p = alloc(vm, 0x1000, MEM_RESERVE | MEM_COMMIT, rw_guard)
    assert query(vm, p) == mbi(p, p, rw_guard, 0x1000, MEM_COMMIT, rw_guard)
    assert vm.committed_bytes == 0x1000


# ------------------------------------------------------------------ A.2 VirtualFree


@pytest.mark.parametrize(
    ("offset", "size"),
    [(0, 1), (0, BLOCK), (0, 0x11000), (0x1001, 0xFFF), (0x1001, 0xFFFF), (1, 0xFFF)],
    ids=hex,
)
def test_release_nonzero_size_fails_87(vm: WindowsVM, offset: int, size: int) -> None:
    """A.2 [T]: VirtualFree(p + offset, size != 0, MEM_RELEASE) -> FALSE, 87."""
    p = half_committed(vm)
    before = snapshot(vm)
    failed(vm.virtual_free(p + offset, size, MEM_RELEASE), ERROR_INVALID_PARAMETER)
    assert snapshot(vm) == before


def test_release_nonzero_size_on_free_memory_fails_87(vm: WindowsVM) -> None:
    """A.2 [T]: the MEM_RELEASE size check (87) comes before looking at the address."""
    p = alloc(vm, BLOCK)
    ok(vm.virtual_free(p, 0, MEM_RELEASE), 1)
    failed(vm.virtual_free(p, 1, MEM_RELEASE), ERROR_INVALID_PARAMETER)
    assert snapshot(vm) == ([], {}, 0)


def test_free_type_zero_fails_87(vm: WindowsVM) -> None:
    """A.2 [T]: VirtualFree(p, 0x10000, 0) -> FALSE, 87."""
    p = half_committed(vm)
    before = snapshot(vm)
    failed(vm.virtual_free(p, 0x10000, 0), ERROR_INVALID_PARAMETER)
    assert snapshot(vm) == before


def test_free_type_mem_free_fails_87(vm: WindowsVM) -> None:
    """A.2 [T]: VirtualFree(p, 0, MEM_FREE) -> FALSE, 87."""
    p = half_committed(vm)
    before = snapshot(vm)
    failed(vm.virtual_free(p, 0, MEM_FREE), ERROR_INVALID_PARAMETER)
    assert snapshot(vm) == before


def test_release_at_base_frees_whole_allocation(vm: WindowsVM) -> None:
    """A.2 [T]: VirtualFree(p, 0, MEM_RELEASE) -> TRUE; committed and reserved pages become free."""
    p = half_committed(vm)
    ok(vm.virtual_free(p, 0, MEM_RELEASE), 1)
    assert snapshot(vm) == ([], {}, 0)
    assert_free(vm, p)
    assert_free(vm, p + 0x1000)


def test_release_inside_first_page_succeeds(vm: WindowsVM) -> None:
    """A.2 [T]: release (addr1+0xfff, 0) -> OK, the whole 0x10000 allocation is freed."""
    p = alloc(vm, BLOCK, MEM_RESERVE | MEM_COMMIT, PAGE_READWRITE)
    ok(vm.virtual_free(p + 0xFFF, 0, MEM_RELEASE), 1)
    assert snapshot(vm) == ([], {}, 0)
    assert_free(vm, p)
    assert_free(vm, p + 0xF000)


@pytest.mark.parametrize("offset", [0x1000, 0x1001], ids=hex)
def test_release_not_at_base_fails_487(vm: WindowsVM, offset: int) -> None:
    """A.2 [T]: VirtualFree(base + 0x1000 or + 0x1001, 0, MEM_RELEASE) -> FALSE, 487."""
    p = alloc(vm, BLOCK, MEM_RESERVE | MEM_COMMIT, PAGE_READWRITE)
    before = snapshot(vm)
    failed(vm.virtual_free(p + offset, 0, MEM_RELEASE), ERROR_INVALID_ADDRESS)
    assert snapshot(vm) == before


def test_release_twice_fails_487(vm: WindowsVM) -> None:
    """A.2 [T]: MEM_RELEASE of memory already released -> FALSE, 487."""
    p = half_committed(vm)
    ok(vm.virtual_free(p, 0, MEM_RELEASE), 1)
    failed(vm.virtual_free(p, 0, MEM_RELEASE), ERROR_INVALID_ADDRESS)
    assert snapshot(vm) == ([], {}, 0)


def test_decommit_size0_in_first_page_decommits_all(vm: WindowsVM) -> None:
    """A.2 [T]: decommit (addr1+0xffe, 0) -> OK; the entire allocation is decommitted."""
    p = alloc(vm, BLOCK, MEM_RESERVE | MEM_COMMIT, PAGE_READWRITE)
    ok(vm.virtual_free(p + 0xFFE, 0, MEM_DECOMMIT), 1)
    assert query(vm, p) == mbi(p, p, PAGE_READWRITE, BLOCK, MEM_RESERVE, 0)
    assert vm.allocations == {p: Allocation(p, BLOCK, PAGE_READWRITE)}
    assert vm.committed_bytes == 0


def test_decommit_size0_not_in_first_page_fails_487(vm: WindowsVM) -> None:
    """A.2 [T]: decommit (addr1+0x1001, 0) -> FALSE, 487 (FREE_VM_NOT_AT_BASE)."""
    p = alloc(vm, BLOCK, MEM_RESERVE | MEM_COMMIT, PAGE_READWRITE)
    before = snapshot(vm)
    failed(vm.virtual_free(p + 0x1001, 0, MEM_DECOMMIT), ERROR_INVALID_ADDRESS)
    assert snapshot(vm) == before


def test_decommit_partially_committed_reservation(vm: WindowsVM) -> None:
    """A.2 [T]: VirtualFree(p, 0x10000, MEM_DECOMMIT) on a partly committed block -> TRUE."""
    p = half_committed(vm)
    ok(vm.virtual_free(p, 0x10000, MEM_DECOMMIT), 1)
    assert query(vm, p) == mbi(p, p, PAGE_NOACCESS, BLOCK, MEM_RESERVE, 0)
    assert vm.committed_bytes == 0


def test_decommit_rounds_to_touched_pages(vm: WindowsVM) -> None:
    """A.2 [T]: decommit (addr1+0x1fff, 2) -> OK; exactly pages addr1+0x1000..+0x3000."""
    rw = PAGE_READWRITE
    p = alloc(vm, BLOCK, MEM_RESERVE | MEM_COMMIT, rw)
    ok(vm.virtual_free(p + 0x1FFF, 2, MEM_DECOMMIT), 1)
    assert query(vm, p) == mbi(p, p, rw, 0x1000, MEM_COMMIT, rw)
    assert query(vm, p + 0x1000) == mbi(p + 0x1000, p, rw, 0x2000, MEM_RESERVE, 0)
    assert query(vm, p + 0x3000) == mbi(p + 0x3000, p, rw, 0xD000, MEM_COMMIT, rw)
    assert vm.committed_bytes == 0xE000


def test_decommit_past_allocation_end_fails_87(vm: WindowsVM) -> None:
    """A.2 [T]: MEM_DECOMMIT of a range running past the allocation end -> FALSE, 87."""
    p = alloc(vm, BLOCK, MEM_RESERVE | MEM_COMMIT, PAGE_READWRITE)
    before = snapshot(vm)
    failed(vm.virtual_free(p, 0x11000, MEM_DECOMMIT), ERROR_INVALID_PARAMETER)
    assert snapshot(vm) == before


def test_decommit_spanning_two_allocations_fails_87(vm: WindowsVM) -> None:
    """A.2 [T]: MEM_DECOMMIT of a range spanning two allocations -> FALSE, 87."""
    kind = MEM_RESERVE | MEM_COMMIT
    p = alloc(vm, BLOCK, kind, PAGE_READWRITE)
    ok(vm.virtual_alloc(p + BLOCK, BLOCK, kind, PAGE_READWRITE), p + BLOCK)
    before = snapshot(vm)
    failed(vm.virtual_free(p + 0xF000, 0x2000, MEM_DECOMMIT), ERROR_INVALID_PARAMETER)
    assert snapshot(vm) == before


@pytest.mark.parametrize("size", [0, 0x1000], ids=hex)
def test_decommit_free_memory_fails_487(vm: WindowsVM, size: int) -> None:
    """A.2 [T]: MEM_DECOMMIT on a freed page -> FALSE, 487 (MEMORY_NOT_ALLOCATED)."""
    p = half_committed(vm)
    ok(vm.virtual_free(p, 0, MEM_RELEASE), 1)
    failed(vm.virtual_free(p, size, MEM_DECOMMIT), ERROR_INVALID_ADDRESS)
    assert snapshot(vm) == ([], {}, 0)


# ------------------------------------------------------------------ A.3 VirtualQuery


def test_query_reserved_0xfffc_fields(vm: WindowsVM) -> None:
    """A.3 [T]: query of a 0xFFFC reserve -> 48, {p, p, NOACCESS, 0x10000, RESERVE, 0, PRIVATE}."""
    p = alloc(vm, 0xFFFC)
    result = vm.virtual_query(p)
    assert result.value == 48
    assert result.error is None
    assert result.info == MemoryBasicInformation(
        p, p, PAGE_NOACCESS, 0x10000, MEM_RESERVE, 0, MEM_PRIVATE
    )


def test_query_base_address_is_page_rounded(vm: WindowsVM) -> None:
    """A.3 [T]: BaseAddress is the page-rounded query address; RegionSize counts from it."""
    p = alloc(vm, BLOCK, MEM_RESERVE | MEM_COMMIT, PAGE_READWRITE)
    info = query(vm, p + 0x1234)
    assert info == mbi(p + 0x1000, p, PAGE_READWRITE, 0xF000, MEM_COMMIT, PAGE_READWRITE)


def test_query_allocation_protect_survives_commit(vm: WindowsVM) -> None:
    """A.3 [T]: AllocationProtect is the reserving call's flProtect, unchanged by a commit."""
    p = alloc(vm, BLOCK, MEM_RESERVE, PAGE_NOACCESS)
    ok(vm.virtual_alloc(p, BLOCK, MEM_COMMIT, PAGE_READWRITE), p)
    assert query(vm, p) == mbi(p, p, PAGE_NOACCESS, BLOCK, MEM_COMMIT, PAGE_READWRITE)


def test_query_commit_first_page_splits_region(vm: WindowsVM) -> None:
    """A.3 [T]: after committing page 0 NOACCESS: {0x1000, COMMIT, 1} then {0xF000, RESERVE, 0}."""
    p = half_committed(vm)
    assert query(vm, p) == mbi(p, p, PAGE_NOACCESS, 0x1000, MEM_COMMIT, PAGE_NOACCESS)
    assert query(vm, p + 0x1000) == mbi(p + 0x1000, p, PAGE_NOACCESS, 0xF000, MEM_RESERVE, 0)


@pytest.mark.parametrize(
    "kind", [MEM_RESERVE, MEM_RESERVE | MEM_COMMIT], ids=["reserve", "reserve_commit"]
)
def test_query_region_stops_at_allocation_end(vm: WindowsVM, kind: int) -> None:
    """A.3 [T]: RegionSize never crosses the end of the allocation, even into a twin neighbour."""
    p = alloc(vm, BLOCK, kind, PAGE_READWRITE)
    ok(vm.virtual_alloc(p + BLOCK, BLOCK, kind, PAGE_READWRITE), p + BLOCK)
    state, protect = (MEM_COMMIT, PAGE_READWRITE) if kind & MEM_COMMIT else (MEM_RESERVE, 0)
    assert query(vm, p) == mbi(p, p, PAGE_READWRITE, BLOCK, state, protect)
    assert query(vm, p + BLOCK) == mbi(p + BLOCK, p + BLOCK, PAGE_READWRITE, BLOCK, state, protect)


def test_query_free_memory_fields(vm: WindowsVM) -> None:
    """A.3 [T]: freed memory -> MEM_FREE, Protect NOACCESS, AllocationBase 0, AllocProtect 0."""
    p = alloc(vm, BLOCK, MEM_RESERVE | MEM_COMMIT, PAGE_READWRITE)
    ok(vm.virtual_free(p, 0, MEM_RELEASE), 1)
    assert_free(vm, p)
    assert_free(vm, p + 0x8000)


# ------------------------------------------------------------------ A.5 commit limit


@pytest.mark.parametrize("address", [0, BLOCK], ids=["null", "explicit"])
def test_reserve_commit_over_limit_fails_1455(address: int) -> None:
    """A.5 [D]: reserve+commit whose charge exceeds the commit limit -> NULL, 1455, no change."""
    vm = WindowsVM(commit_limit=0x3000)
    kind = MEM_RESERVE | MEM_COMMIT
    failed(vm.virtual_alloc(address, 0x4000, kind, PAGE_READWRITE), ERROR_COMMITMENT_LIMIT)
    assert snapshot(vm) == ([], {}, 0)
    assert_free(vm, BLOCK)


def test_commit_over_limit_fails_1455() -> None:
    """A.5 [D]: MEM_COMMIT whose new charge exceeds the commit limit -> NULL, 1455, no change."""
    vm = WindowsVM(commit_limit=0x3000)
    p = alloc(vm, BLOCK)
    ok(vm.virtual_alloc(p, 0x2000, MEM_COMMIT, PAGE_READWRITE), p)
    before = snapshot(vm)
    failed(vm.virtual_alloc(p + 0x2000, 0x2000, MEM_COMMIT, PAGE_READWRITE), ERROR_COMMITMENT_LIMIT)
    assert snapshot(vm) == before
    assert query(vm, p + 0x2000) == mbi(p + 0x2000, p, PAGE_NOACCESS, 0xE000, MEM_RESERVE, 0)


def test_commit_up_to_limit_succeeds() -> None:
    """A.5 [D]: a commit whose charge reaches but does not exceed the limit succeeds."""
    vm = WindowsVM(commit_limit=0x3000)
    p = alloc(vm, 0x3000, MEM_RESERVE | MEM_COMMIT, PAGE_READWRITE)
    assert query(vm, p) == mbi(p, p, PAGE_READWRITE, 0x3000, MEM_COMMIT, PAGE_READWRITE)
    assert vm.committed_bytes == 0x3000


def test_reserve_takes_no_charge() -> None:
    """A.5 [D]: MEM_RESERVE alone takes no commit charge, even with a zero commit limit."""
    vm = WindowsVM(commit_limit=0)
    p = alloc(vm, BLOCK)
    assert query(vm, p) == mbi(p, p, PAGE_NOACCESS, BLOCK, MEM_RESERVE, 0)
    assert vm.committed_bytes == 0


def test_recommit_at_limit_costs_nothing() -> None:
    """A.5 [R]: re-committing committed pages is free, so it succeeds at the commit limit."""
    vm = WindowsVM(commit_limit=0x2000)
    p = alloc(vm, BLOCK)
    ok(vm.virtual_alloc(p, 0x2000, MEM_COMMIT, PAGE_READWRITE), p)
    ok(vm.virtual_alloc(p, 0x2000, MEM_COMMIT, PAGE_READWRITE), p)
    assert vm.committed_bytes == 0x2000
    assert query(vm, p) == mbi(p, p, PAGE_NOACCESS, 0x2000, MEM_COMMIT, PAGE_READWRITE)


def test_overlapping_commit_charges_only_new_pages() -> None:
    """A.5 [R]: a commit overlapping committed pages is charged only for the new pages."""
    vm = WindowsVM(commit_limit=0x3000)
    p = alloc(vm, BLOCK)
    ok(vm.virtual_alloc(p, 0x2000, MEM_COMMIT, PAGE_READWRITE), p)
    ok(vm.virtual_alloc(p, 0x3000, MEM_COMMIT, PAGE_READWRITE), p)
    assert vm.committed_bytes == 0x3000
    before = snapshot(vm)
    failed(vm.virtual_alloc(p, 0x4000, MEM_COMMIT, PAGE_READWRITE), ERROR_COMMITMENT_LIMIT)
    assert snapshot(vm) == before


def test_decommit_returns_charge() -> None:
    """A.5 [D]: decommit returns the charge, so a later commit fits under the limit again."""
    vm = WindowsVM(commit_limit=0x2000)
    p = alloc(vm, BLOCK)
    ok(vm.virtual_alloc(p, 0x2000, MEM_COMMIT, PAGE_READWRITE), p)
    ok(vm.virtual_free(p, 0x1000, MEM_DECOMMIT), 1)
    assert vm.committed_bytes == 0x1000
    ok(vm.virtual_alloc(p + 0x2000, 0x1000, MEM_COMMIT, PAGE_READWRITE), p + 0x2000)
    assert vm.committed_bytes == 0x2000


# ----------------------------------------------------- VirtualAlloc2, VirtualProtect
# Sources: learn.microsoft.com "VirtualAlloc2 function (memoryapi.h)"
# (https://learn.microsoft.com/en-us/windows/win32/api/memoryapi/nf-memoryapi-virtualalloc2),
# "MEM_ADDRESS_REQUIREMENTS structure (winnt.h)"
# (https://learn.microsoft.com/en-us/windows/win32/api/winnt/ns-winnt-mem_address_requirements),
# "VirtualProtect function (memoryapi.h)"
# (https://learn.microsoft.com/en-us/windows/win32/api/memoryapi/nf-memoryapi-virtualprotect),
# "Memory Protection Constants"
# (https://learn.microsoft.com/en-us/windows/win32/memory/memory-protection-constants), and
# Wine's test_NtAllocateVirtualMemoryEx_address_requirements / test_VirtualProtect, run on
# Windows (docs/VM_SEMANTICS.md A.6, A.7).


def _req(lowest: int = 0, highest: int = 0, alignment: int = 0) -> list[ExtendedParameter]:
    return [ExtendedParameter(1, AddressRequirements(lowest, highest, alignment))]


def test_alloc2_requirement_validation_is_87() -> None:
    vm = WindowsVM()
    bad = [
        _req(alignment=0x8000),  # below the granularity [T]
        _req(alignment=0x30000),  # not a power of two [T], [D]
        _req(lowest=0x20001000),  # not granularity-aligned [T], [D]
        _req(highest=0x20000FFE),  # +1 not on a page boundary [T]
        _req(highest=vm.max_address + 0x1000),  # beyond lpMaximumApplicationAddress [T], [D]
        _req(lowest=0x30000000, highest=0x20000FFF),  # lowest above highest [T]
        [ExtendedParameter(0)],  # MemExtendedParameterInvalidType [T]
        [ExtendedParameter(7)],  # MemExtendedParameterMax [T]
        _req(alignment=0x10000) * 2,  # the same type twice [T]
    ]
    for params in bad:
        assert vm.virtual_alloc2(0, 0x1000, MEM_RESERVE, PAGE_NOACCESS, params, len(params)) == (
            WinResult(0, ERROR_INVALID_PARAMETER)
        ), params
    # A count with a NULL array [T]; a base address with requirements [T], [D].
    assert vm.virtual_alloc2(0, 0x1000, MEM_RESERVE, PAGE_NOACCESS, None, 1).error == 87
    base = vm.virtual_alloc2(
        0x20000000, 0x1000, MEM_RESERVE, PAGE_NOACCESS, _req(alignment=0x10000), 1
    )
    assert base == WinResult(0, ERROR_INVALID_PARAMETER)
    assert not vm.allocations


def test_alloc2_places_at_the_lowest_aligned_fit_or_8() -> None:
    vm = WindowsVM()
    window = _req(lowest=0x20000000, highest=0x20000FFF + 0x40000, alignment=0x40000)
    got = vm.virtual_alloc2(0, 0x1000, MEM_RESERVE, PAGE_READWRITE, window, 1)
    assert got == WinResult(0x20000000)
    again = vm.virtual_alloc2(0, 0x1000, MEM_RESERVE, PAGE_READWRITE, window, 1)
    assert again == WinResult(0x20040000), "the next aligned base in the window"
    assert vm.virtual_alloc2(0, 0x1000, MEM_RESERVE, PAGE_READWRITE, window, 1) == (
        WinResult(0, ERROR_NOT_ENOUGH_MEMORY)
    )
    # Alignment 0x20000000 cannot place 0x2000 bytes below 0x20001000 [T].
    tight = _req(highest=0x20000FFF, alignment=0x20000000)
    assert vm.virtual_alloc2(0, 0x2000, MEM_RESERVE, 4, tight, 1).error == ERROR_NOT_ENOUGH_MEMORY
    # All-zero requirements are no requirements [D]: VirtualAlloc's answer.
    plain = vm.virtual_alloc2(0, 0x1000, MEM_RESERVE, 4, _req(), 1, chosen_base=0x50000000)
    assert plain == WinResult(0x50000000)


def test_alloc2_checks_the_os_choice() -> None:
    vm = WindowsVM()
    with pytest.raises(ValueError, match="outside"):
        vm.virtual_alloc2(
            0, 0x1000, MEM_RESERVE, 1, _req(alignment=1 << 32), 1, chosen_base=0x10000
        )
    two_gib = vm.virtual_alloc2(
        0, 1 << 31, MEM_RESERVE, 1, _req(alignment=1 << 32), 1, chosen_base=1 << 40
    )
    assert two_gib == WinResult(1 << 40) and vm.allocations[1 << 40].size == 1 << 31


def test_virtual_protect_rules() -> None:
    vm = WindowsVM()
    base = vm.virtual_alloc(0, 0x10000, MEM_RESERVE, PAGE_NOACCESS, chosen_base=0x40000000).value
    # Reserved pages, or a range with one: 487 [T A.7 3, 5].
    assert vm.virtual_protect(base, 0x1000, PAGE_READONLY).error == ERROR_INVALID_ADDRESS
    assert vm.virtual_alloc(base, 0x2000, MEM_COMMIT, PAGE_NOACCESS).ok
    assert vm.virtual_protect(base, 0x3000, PAGE_READONLY).error == ERROR_INVALID_ADDRESS
    # Old protection of the first page [T A.7 6]; the region splits, then merges (A.3 [T]).
    assert vm.virtual_protect(base, 0x1000, PAGE_READONLY) == ProtectResult(1, None, PAGE_NOACCESS)
    assert [r.region_size for r in vm.regions(base, base + 0x2000)] == [0x1000, 0x1000]
    assert vm.virtual_protect(base + 0x1000, 1, PAGE_READONLY).old_protect == PAGE_NOACCESS
    assert vm.regions(base, base + 0x2000)[0].region_size == 0x2000
    # Refused protections [T A.7 12, 19; D modifier rules]; NULL lpflOldProtect 998 [T].
    for bad in (
        0,
        PAGE_WRITECOPY,
        PAGE_READWRITE | PAGE_EXECUTE_WRITECOPY,
        PAGE_NOACCESS | PAGE_GUARD,
    ):
        assert vm.virtual_protect(base, 0x1000, bad).error == ERROR_INVALID_PARAMETER
    assert vm.virtual_protect(base, 0x1000, PAGE_READWRITE, False).error == ERROR_NOACCESS
    # The cache attribute stays the allocation's [T A.1 notes].
    assert vm.virtual_protect(base, 0x1000, PAGE_READONLY | PAGE_NOCACHE).ok
    page = vm.state_of(base)
    assert page is not None and page.protect == PAGE_READONLY
    # Past the allocation's end, or on free memory: 487 (one allocation only [D]).
    assert vm.virtual_protect(base + 0xF000, 0x2000, PAGE_READONLY).error == ERROR_INVALID_ADDRESS
    assert vm.virtual_protect(0x60000000, 0x1000, PAGE_READONLY).error == ERROR_INVALID_ADDRESS
