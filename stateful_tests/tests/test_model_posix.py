"""The POSIX reference model against docs/VM_SEMANTICS.md B.1, B.2 and B.4 (macOS).

Each test pins one fact of the spec; its docstring names the section and evidence tag.
"""

from __future__ import annotations

import ctypes
import platform
import sys

import pytest
from arenacheck.model.posix_constants import (
    DARWIN,
    EAGAIN,
    EEXIST,
    EFAULT,
    EINVAL,
    ENOMEM,
    EPERM,
    LINUX,
    LINUX_ADVICE,
    LINUX_ARM64,
    LINUX_MAP_FLAGS,
    LINUX_MAP_TYPES,
    LINUX_PROTS,
    MADV_COLD,
    MADV_DONTDUMP,
    MADV_DONTNEED,
    MADV_DONTNEED_LOCKED,
    MADV_FREE,
    MADV_GUARD_INSTALL,
    MADV_GUARD_REMOVE,
    MADV_HUGEPAGE,
    MADV_NORMAL,
    MADV_PAGEOUT,
    MADV_POPULATE_READ,
    MADV_POPULATE_WRITE,
    MADV_REMOVE,
    MADV_WILLNEED,
    MAP_FIXED,
    MAP_PRIVATE,
    MAP_SHARED,
    PROT_EXEC,
    PROT_NONE,
    PROT_READ,
    PROT_WRITE,
    UNSAFE_ADVICE,
    VF,
    PosixFlavor,
    Value,
)
from arenacheck.model.posix_vm import MAP_FAILED, NotModelled, PosixResult, PosixVM
from arenacheck.model.spans import OsSpan, merge_spans

PAGE = 4096
BASE = 0x7F00_0000_0000
RW = PROT_READ | PROT_WRITE
ANON = LINUX.map_anonymous
NORESERVE = LINUX.map_noreserve
NOREPLACE = 0x100000
PRIVATE_ANON = MAP_PRIVATE | ANON
TASK_SIZE = (1 << 47) - PAGE

OK = PosixResult(0)
FAIL_EINVAL = PosixResult(-1, EINVAL)
FAIL_ENOMEM = PosixResult(-1, ENOMEM)
MMAP_EINVAL = PosixResult(MAP_FAILED, EINVAL)
MMAP_ENOMEM = PosixResult(MAP_FAILED, ENOMEM)


# ------------------------------------------------------------------ helpers


def pages(n: int) -> int:
    return n * PAGE


def at(page_index: int, base: int = BASE) -> int:
    """Address of page ``page_index`` counted from ``base``."""
    return base + pages(page_index)


def mapped(
    vm: PosixVM,
    addr: int,
    n: int,
    prot: int,
    extra_flags: int = 0,
    flavor: PosixFlavor = LINUX,
) -> None:
    """Map ``n`` pages of private anonymous memory where the OS chose ``addr``; must succeed."""
    flags = MAP_PRIVATE | flavor.map_anonymous | extra_flags
    r = vm.mmap(0, pages(n), prot, flags, -1, 0, chosen=addr)
    assert r == PosixResult(addr)


def reserved(vm: PosixVM, addr: int, n: int) -> None:
    """The B.1 "reserve": PROT_NONE, MAP_NORESERVE."""
    mapped(vm, addr, n, PROT_NONE, NORESERVE)


def fill(vm: PosixVM, addr: int, n: int, byte: int) -> bytes:
    """Write ``n`` pages of ``byte`` at ``addr`` and return what was written."""
    data = bytes([byte]) * pages(n)
    vm.write(addr, data)
    return data


def zeros(n: int) -> bytes:
    return bytes(pages(n))


# ------------------------------------------------------------ B.1 mmap


def test_mmap_len_zero_einval() -> None:
    """B.1 [E, M]: mmap with len == 0 -> MAP_FAILED, EINVAL."""
    vm = PosixVM()
    assert vm.mmap(0, 0, RW, PRIVATE_ANON, -1, 0, chosen=BASE) == MMAP_EINVAL
    assert vm.is_unmapped(BASE, at(1))


@pytest.mark.parametrize("length", [(1 << 64) - 1, 1 << 63, 1 << 47])
def test_mmap_len_beyond_address_space_enomem(length: int) -> None:
    """B.1 [E]: mmap len that overflows page rounding or exceeds the address space -> ENOMEM."""
    vm = PosixVM()
    assert vm.mmap(0, length, PROT_NONE, PRIVATE_ANON | NORESERVE, -1, 0) == MMAP_ENOMEM
    assert len(vm.vmas) == 0


def test_mmap_neither_private_nor_shared_einval() -> None:
    """B.1 [E]: mmap with neither MAP_PRIVATE nor MAP_SHARED -> EINVAL."""
    vm = PosixVM()
    assert vm.mmap(0, PAGE, RW, ANON, -1, 0, chosen=BASE) == MMAP_EINVAL
    assert vm.is_unmapped(BASE, at(1))


def test_mmap_anonymous_unaligned_offset_einval() -> None:
    """B.1 [E]: anonymous mmap with an unaligned offset -> EINVAL."""
    vm = PosixVM()
    assert vm.mmap(0, PAGE, RW, PRIVATE_ANON, -1, 1, chosen=BASE) == MMAP_EINVAL
    assert vm.is_unmapped(BASE, at(1))


def test_mmap_fixed_unaligned_addr_einval() -> None:
    """B.1 [E]: mmap MAP_FIXED with an unaligned addr -> EINVAL."""
    vm = PosixVM()
    r = vm.mmap(BASE + 1, PAGE, RW, PRIVATE_ANON | MAP_FIXED, -1, 0)
    assert r == MMAP_EINVAL
    assert vm.is_unmapped(BASE, at(2))


def test_mmap_fixed_replaces_existing_and_splits_neighbours() -> None:
    """B.1 [M, E]: MAP_FIXED over existing mappings silently replaces them, splitting neighbours."""
    vm = PosixVM()
    mapped(vm, BASE, 3, RW)
    data = fill(vm, BASE, 3, 0xAB)
    r = vm.mmap(at(1), PAGE, PROT_READ, PRIVATE_ANON | MAP_FIXED, -1, 0)
    assert r == PosixResult(at(1))
    assert [vm.prot_at(at(i)) for i in range(3)] == [RW, PROT_READ, RW]
    assert vm.expected(BASE, pages(1)) == data[: pages(1)]
    assert vm.expected(at(1), pages(1)) == zeros(1)
    assert vm.expected(at(2), pages(1)) == data[: pages(1)]


def test_mmap_fixed_replaces_across_mappings_and_holes() -> None:
    """B.1 [M, E]: MAP_FIXED over several mappings and holes maps the whole range."""
    vm = PosixVM()
    mapped(vm, BASE, 2, RW)
    mapped(vm, at(3), 2, PROT_READ)
    r = vm.mmap(at(1), pages(3), PROT_NONE, PRIVATE_ANON | NORESERVE | MAP_FIXED, -1, 0)
    assert r == PosixResult(at(1))
    assert vm.is_mapped(BASE, at(5))
    assert [vm.prot_at(at(i)) for i in range(5)] == [RW, 0, 0, 0, PROT_READ]


def test_mmap_fixed_noreplace_over_existing_eexist() -> None:
    """B.1 [E]: MAP_FIXED_NOREPLACE over an existing mapping -> EEXIST, nothing changed."""
    vm = PosixVM()
    mapped(vm, at(1), 1, RW)
    data = fill(vm, at(1), 1, 0x5A)
    r = vm.mmap(BASE, pages(3), PROT_NONE, PRIVATE_ANON | NOREPLACE, -1, 0)
    assert r == PosixResult(MAP_FAILED, EEXIST)
    assert vm.is_unmapped(BASE, at(1))
    assert vm.prot_at(at(1)) == RW
    assert vm.is_unmapped(at(2), at(3))
    assert vm.expected(at(1), pages(1)) == data


def test_mmap_fixed_noreplace_with_map_fixed_still_eexist() -> None:
    """B.1 [E] + [K do_mmap]: MAP_FIXED_NOREPLACE over a mapping -> EEXIST even with MAP_FIXED."""
    vm = PosixVM()
    mapped(vm, BASE, 1, RW)
    r = vm.mmap(BASE, PAGE, PROT_NONE, PRIVATE_ANON | NOREPLACE | MAP_FIXED, -1, 0)
    assert r == PosixResult(MAP_FAILED, EEXIST)
    assert vm.prot_at(BASE) == RW


def test_mmap_fixed_noreplace_into_hole_maps_at_addr() -> None:
    """B.1 [E]: MAP_FIXED_NOREPLACE into a free range maps exactly there."""
    vm = PosixVM()
    mapped(vm, BASE, 1, RW)
    r = vm.mmap(at(1), PAGE, PROT_READ, PRIVATE_ANON | NOREPLACE, -1, 0)
    assert r == PosixResult(at(1))
    assert vm.prot_at(at(1)) == PROT_READ


def test_mmap_unaligned_hint_is_only_a_hint() -> None:
    """B.1 [E]: a non-FIXED hint (even unaligned) is only a hint: no error, OS's choice wins."""
    vm = PosixVM()
    r = vm.mmap(0x6000_0000_0123, PAGE, RW, PRIVATE_ANON, -1, 0, chosen=BASE)
    assert r == PosixResult(BASE)
    assert vm.is_mapped(BASE, at(1))
    assert vm.is_unmapped(0x6000_0000_0000, 0x6000_0000_1000)


def test_mmap_unknown_prot_bits_ignored() -> None:
    """B.1 [E]: mmap with unknown prot bits (0x80) ignores them and succeeds."""
    vm = PosixVM()
    r = vm.mmap(0, PAGE, PROT_READ | 0x80, PRIVATE_ANON, -1, 0, chosen=BASE)
    assert r == PosixResult(BASE)
    assert vm.prot_at(BASE) == PROT_READ


def test_mmap_unknown_flag_bits_with_private_ignored() -> None:
    """B.1 [E]: mmap with unknown flag bits alongside MAP_PRIVATE ignores them and succeeds."""
    vm = PosixVM()
    r = vm.mmap(0, PAGE, RW, PRIVATE_ANON | 0x200000, -1, 0, chosen=BASE)
    assert r == PosixResult(BASE)
    assert vm.prot_at(BASE) == RW


def test_mmap_rlimit_data_counts_private_writable() -> None:
    """B.1 [M, E]: mmap beyond RLIMIT_DATA of private writable memory -> ENOMEM."""
    vm = PosixVM(data_limit=pages(4))
    mapped(vm, BASE, 4, RW)
    assert vm.data_bytes == pages(4)
    r = vm.mmap(0, PAGE, RW, PRIVATE_ANON, -1, 0, chosen=at(8))
    assert r == MMAP_ENOMEM
    assert vm.is_unmapped(at(8), at(9))
    assert vm.data_bytes == pages(4)


def test_mmap_rlimit_data_counts_noreserve_writable() -> None:
    """B.1 [M, E] / B.2: RW mmap beyond RLIMIT_DATA -> ENOMEM even with MAP_NORESERVE."""
    vm = PosixVM(data_limit=pages(4))
    r = vm.mmap(0, pages(5), RW, PRIVATE_ANON | NORESERVE, -1, 0, chosen=BASE)
    assert r == MMAP_ENOMEM
    assert vm.is_unmapped(BASE, at(5))
    assert vm.data_bytes == 0


def test_mmap_rlimit_data_allows_prot_none_reservation() -> None:
    """B.1 [M, E] / B.2: PROT_NONE reservations are not counted against RLIMIT_DATA."""
    vm = PosixVM(data_limit=pages(4))
    r = vm.mmap(0, pages(64), PROT_NONE, PRIVATE_ANON | NORESERVE, -1, 0, chosen=BASE)
    assert r == PosixResult(BASE)
    assert vm.data_bytes == 0
    assert vm.is_mapped(BASE, at(64))


# ---------------------------------------------------------- B.1 munmap


def test_munmap_unaligned_addr_einval() -> None:
    """B.1 [E, M]: munmap with an unaligned addr -> EINVAL, nothing unmapped."""
    vm = PosixVM()
    mapped(vm, BASE, 2, RW)
    assert vm.munmap(BASE + 1, PAGE) == FAIL_EINVAL
    assert vm.is_mapped(BASE, at(2))


def test_munmap_len_zero_einval() -> None:
    """B.1 [E, K do_vmi_munmap]: munmap with len == 0 -> EINVAL."""
    vm = PosixVM()
    mapped(vm, BASE, 1, RW)
    assert vm.munmap(BASE, 0) == FAIL_EINVAL
    assert vm.is_mapped(BASE, at(1))


def test_munmap_unaligned_len_rounds_up() -> None:
    """B.1 [M, E]: munmap len is rounded up to whole pages; an unaligned len is fine."""
    vm = PosixVM()
    mapped(vm, BASE, 3, RW)
    assert vm.munmap(BASE, PAGE + 1) == OK
    assert vm.is_unmapped(BASE, at(2))
    assert vm.prot_at(at(2)) == RW


def test_munmap_partly_unmapped_range_ok() -> None:
    """B.1 [M, E]: munmap of a range that is partly unmapped -> 0, the mapped part is removed."""
    vm = PosixVM()
    mapped(vm, BASE, 2, RW)
    mapped(vm, at(3), 2, RW)
    assert vm.munmap(at(1), pages(3)) == OK
    assert vm.prot_at(BASE) == RW
    assert vm.is_unmapped(at(1), at(4))
    assert vm.prot_at(at(4)) == RW


def test_munmap_wholly_unmapped_range_ok() -> None:
    """B.1 [M, E]: munmap of a wholly unmapped range -> 0, not an error."""
    vm = PosixVM()
    mapped(vm, BASE, 1, RW)
    assert vm.munmap(at(4), pages(4)) == OK
    assert vm.is_mapped(BASE, at(1))


def test_munmap_beyond_task_size_einval() -> None:
    """B.1 [K, E]: munmap with start > TASK_SIZE or len > TASK_SIZE - start -> EINVAL."""
    vm = PosixVM()
    mapped(vm, BASE, 2, RW)
    assert vm.munmap(0xFFFF_FFFF_FF60_0000, PAGE) == FAIL_EINVAL
    assert vm.munmap(TASK_SIZE + PAGE, PAGE) == FAIL_EINVAL
    assert vm.munmap(TASK_SIZE, PAGE) == FAIL_EINVAL
    assert vm.munmap(BASE, 1 << 63) == FAIL_EINVAL
    assert vm.munmap(BASE, TASK_SIZE - BASE + 1) == FAIL_EINVAL
    assert vm.is_mapped(BASE, at(2))
    assert vm.munmap(BASE, TASK_SIZE - BASE) == OK
    assert vm.is_unmapped(BASE, at(2))


def test_munmap_drops_contents() -> None:
    """B.1 [M]: munmap drops the pages; a new mapping at the same place reads zeros."""
    vm = PosixVM()
    mapped(vm, BASE, 2, RW)
    fill(vm, BASE, 2, 0x11)
    assert vm.munmap(BASE, pages(2)) == OK
    assert vm.is_unmapped(BASE, at(2))
    assert vm.expected(BASE, pages(2)) == zeros(2)
    mapped(vm, BASE, 2, RW)
    assert vm.expected(BASE, pages(2)) == zeros(2)


# -------------------------------------------------------- B.1 mprotect


def test_mprotect_unaligned_addr_einval() -> None:
    """B.1 [M, E]: mprotect with an unaligned addr -> EINVAL, nothing changed."""
    vm = PosixVM()
    mapped(vm, BASE, 2, PROT_NONE)
    assert vm.mprotect(BASE + 1, PAGE, RW) == FAIL_EINVAL
    assert vm.prot_at(BASE) == PROT_NONE


def test_mprotect_len_zero_is_noop() -> None:
    """B.1 [K, E]: mprotect with len == 0 -> 0 and nothing happens, even on a hole."""
    vm = PosixVM()
    mapped(vm, BASE, 1, PROT_NONE)
    assert vm.mprotect(BASE, 0, RW) == OK
    assert vm.prot_at(BASE) == PROT_NONE
    assert vm.mprotect(at(5), 0, RW) == OK
    assert vm.is_unmapped(at(5), at(6))


def test_mprotect_len_zero_checked_after_alignment() -> None:
    """B.1 [K, E]: mprotect len == 0 is checked after the alignment test: unaligned -> EINVAL."""
    vm = PosixVM()
    assert vm.mprotect(BASE + 1, 0, PROT_READ) == FAIL_EINVAL


def test_mprotect_len_zero_checked_before_prot_validation() -> None:
    """B.1 [K]: only the alignment test precedes len == 0, so invalid prot with len 0 -> 0."""
    vm = PosixVM()
    mapped(vm, BASE, 1, PROT_NONE)
    assert vm.mprotect(BASE, 0, PROT_READ | 0x10) == OK
    assert vm.prot_at(BASE) == PROT_NONE


def test_mprotect_wrapping_range_enomem() -> None:
    """B.1 [K, E]: mprotect whose start + len overflows -> ENOMEM, nothing changed."""
    vm = PosixVM()
    mapped(vm, BASE, 2, PROT_NONE)
    assert vm.mprotect(BASE, (1 << 64) - PAGE, RW) == FAIL_ENOMEM
    assert vm.mprotect(BASE, (1 << 64) - 1, RW) == FAIL_ENOMEM
    assert vm.prot_at(BASE) == PROT_NONE
    assert vm.prot_at(at(1)) == PROT_NONE


@pytest.mark.parametrize("bit", [0x10, 0x20])
def test_mprotect_invalid_prot_bits_einval_on_x86(bit: int) -> None:
    """B.1 [K arch_validate_prot, E]: mprotect with prot bits 0x10/0x20 on x86_64 -> EINVAL."""
    vm = PosixVM()
    mapped(vm, BASE, 1, PROT_NONE)
    assert vm.mprotect(BASE, PAGE, PROT_READ | bit) == FAIL_EINVAL
    assert vm.prot_at(BASE) == PROT_NONE


@pytest.mark.parametrize("bit", [0x10, 0x20])
def test_mprotect_bti_mte_bits_valid_on_arm64(bit: int) -> None:
    """B.1 [K arch_validate_prot]: PROT_BTI (0x10) / PROT_MTE (0x20) are valid on arm64."""
    vm = PosixVM(flavor=LINUX_ARM64)
    mapped(vm, BASE, 1, PROT_NONE, flavor=LINUX_ARM64)
    assert vm.mprotect(BASE, PAGE, PROT_READ | bit) == OK
    assert vm.is_readable(BASE, at(1))


def test_mprotect_starting_in_hole_enomem_nothing_changed() -> None:
    """B.1 [K, E]: mprotect of a range that starts in a hole -> ENOMEM, nothing changed."""
    vm = PosixVM()
    mapped(vm, at(1), 3, PROT_NONE)
    assert vm.mprotect(BASE, pages(4), RW) == FAIL_ENOMEM
    assert vm.is_unmapped(BASE, at(1))
    assert [vm.prot_at(at(i)) for i in range(1, 4)] == [PROT_NONE] * 3


def test_mprotect_hitting_hole_changes_prefix_then_enomem() -> None:
    """B.1 [K loop, E]: mprotect from a mapping into a hole changes the part before it, ENOMEM."""
    vm = PosixVM()
    mapped(vm, BASE, 2, PROT_NONE)
    mapped(vm, at(2), 2, PROT_READ)
    mapped(vm, at(5), 2, PROT_NONE)
    assert vm.mprotect(BASE, pages(7), RW) == FAIL_ENOMEM
    assert [vm.prot_at(at(i)) for i in range(4)] == [RW] * 4
    assert vm.is_unmapped(at(4), at(5))
    assert [vm.prot_at(at(i)) for i in range(5, 7)] == [PROT_NONE] * 2


def test_mprotect_keeps_contents() -> None:
    """B.1 [M]: mprotect changes protection only; the contents survive PROT_NONE and back."""
    vm = PosixVM()
    mapped(vm, BASE, 2, RW)
    data = fill(vm, BASE, 2, 0x3C)
    assert vm.mprotect(BASE, pages(2), PROT_NONE) == OK
    assert vm.mprotect(BASE, pages(2), PROT_READ) == OK
    assert vm.expected(BASE, pages(2)) == data


def test_mprotect_rlimit_data_enomem() -> None:
    """B.1 [K may_expand_vm, E] / B.2: mprotect(RW) beyond RLIMIT_DATA -> ENOMEM."""
    vm = PosixVM(data_limit=pages(4))
    reserved(vm, BASE, 8)
    assert vm.mprotect(BASE, pages(4), RW) == OK
    assert vm.data_bytes == pages(4)
    assert vm.mprotect(at(4), PAGE, RW) == FAIL_ENOMEM
    assert vm.prot_at(at(4)) == PROT_NONE
    assert vm.data_bytes == pages(4)


def test_mprotect_rlimit_data_whole_reservation_refused() -> None:
    """B.2 [E, M]: PROT_NONE reservation allowed, mprotect(RW) of it over RLIMIT_DATA -> ENOMEM."""
    vm = PosixVM(data_limit=pages(4))
    reserved(vm, BASE, 16)
    assert vm.mprotect(BASE, pages(16), RW) == FAIL_ENOMEM
    assert vm.prot_at(BASE) == PROT_NONE
    assert vm.data_bytes == 0


# --------------------------------------------------------- B.1 madvise


def test_madvise_unaligned_addr_einval() -> None:
    """B.1 [M, E]: madvise with an unaligned addr -> EINVAL, nothing discarded."""
    vm = PosixVM()
    mapped(vm, BASE, 1, RW)
    data = fill(vm, BASE, 1, 0x77)
    assert vm.madvise(BASE + 1, PAGE, MADV_DONTNEED) == FAIL_EINVAL
    assert vm.expected(BASE, PAGE) == data


def test_madvise_unknown_advice_einval() -> None:
    """B.1 [M, E]: madvise with unknown advice -> EINVAL."""
    vm = PosixVM()
    mapped(vm, BASE, 1, RW)
    assert vm.madvise(BASE, PAGE, 999) == FAIL_EINVAL


def test_madvise_len_zero_ok() -> None:
    """B.1 [K, E]: madvise with len == 0 -> 0, even on a hole."""
    vm = PosixVM()
    assert vm.madvise(BASE, 0, MADV_DONTNEED) == OK
    assert vm.madvise(BASE, 0, MADV_NORMAL) == OK


def test_madvise_hole_processes_mapped_parts_then_enomem() -> None:
    """B.1 [K madvise_walk_vmas, E]: madvise over a hole handles every mapped part, then ENOMEM."""
    vm = PosixVM()
    mapped(vm, BASE, 2, RW)
    mapped(vm, at(3), 2, RW)
    fill(vm, BASE, 2, 0x21)
    fill(vm, at(3), 2, 0x22)
    assert vm.madvise(BASE, pages(5), MADV_DONTNEED) == FAIL_ENOMEM
    assert vm.expected(BASE, pages(2)) == zeros(2)
    assert vm.expected(at(3), pages(2)) == zeros(2)


def test_madvise_starting_in_hole_processes_later_mapping() -> None:
    """B.1 [K madvise_walk_vmas, E]: madvise starting in a hole still handles later mappings."""
    vm = PosixVM()
    mapped(vm, at(1), 2, RW)
    fill(vm, at(1), 2, 0x44)
    assert vm.madvise(BASE, pages(3), MADV_DONTNEED) == FAIL_ENOMEM
    assert vm.expected(at(1), pages(2)) == zeros(2)


def test_madvise_wholly_unmapped_enomem() -> None:
    """B.1 [K, E]: madvise of a range with no mapping at all -> ENOMEM."""
    vm = PosixVM()
    assert vm.madvise(BASE, pages(2), MADV_NORMAL) == FAIL_ENOMEM


def test_madvise_dontneed_rw_zero_fills() -> None:
    """B.1 [E]: MADV_DONTNEED on RW private anonymous memory -> 0; next read returns zeros."""
    vm = PosixVM()
    mapped(vm, BASE, 3, RW)
    data = fill(vm, BASE, 3, 0x99)
    assert vm.madvise(at(1), PAGE, MADV_DONTNEED) == OK
    assert vm.expected(BASE, PAGE) == data[:PAGE]
    assert vm.expected(at(1), PAGE) == zeros(1)
    assert vm.expected(at(2), PAGE) == data[:PAGE]
    assert vm.prot_at(at(1)) == RW


def test_madvise_dontneed_prot_none_zero_fills() -> None:
    """B.1 [E]: MADV_DONTNEED on PROT_NONE memory -> 0; once accessible again it reads zeros."""
    vm = PosixVM()
    mapped(vm, BASE, 2, RW)
    fill(vm, BASE, 2, 0x55)
    assert vm.mprotect(BASE, pages(2), PROT_NONE) == OK
    assert vm.madvise(BASE, pages(2), MADV_DONTNEED) == OK
    assert vm.mprotect(BASE, pages(2), RW) == OK
    assert vm.expected(BASE, pages(2)) == zeros(2)


def test_shared_mapping_not_modelled() -> None:
    """B.2: shared anonymous mappings are outside the model: it refuses them."""
    vm = PosixVM()
    with pytest.raises(NotModelled):
        vm.mmap(0, PAGE, RW, MAP_SHARED | ANON, -1, 0, chosen=BASE)


# ------------------------------------------------------ B.2 accounting


def test_mmap_private_writable_charged() -> None:
    """B.2 [K]: private writable mmap without MAP_NORESERVE is charged its size."""
    vm = PosixVM()
    mapped(vm, BASE, 4, RW)
    assert vm.charged_bytes == pages(4)


def test_mmap_prot_none_and_readonly_not_charged() -> None:
    """B.2 [K]: private PROT_NONE or read-only mmap (no MAP_NORESERVE) costs nothing."""
    vm = PosixVM()
    mapped(vm, BASE, 4, PROT_NONE)
    mapped(vm, at(8), 4, PROT_READ)
    assert vm.charged_bytes == 0


@pytest.mark.parametrize("mode", [0, 1])
def test_mmap_rw_noreserve_not_charged_modes_0_1(mode: int) -> None:
    """B.2 [K]: MAP_NORESERVE (overcommit modes 0/1) makes an RW mapping not accountable."""
    vm = PosixVM(overcommit_mode=mode)
    mapped(vm, BASE, 4, RW, NORESERVE)
    assert vm.charged_bytes == 0


def test_mmap_mode2_ignores_noreserve() -> None:
    """B.2 [K]: in overcommit mode 2 MAP_NORESERVE is ignored: RW mmap is charged."""
    vm = PosixVM(overcommit_mode=2)
    mapped(vm, BASE, 4, RW, NORESERVE)
    assert vm.charged_bytes == pages(4)


def test_mprotect_rw_of_prot_none_without_noreserve_charged() -> None:
    """B.2 [K mprotect_fixup]: mprotect to writable of a non-NORESERVE mapping charges it."""
    vm = PosixVM()
    mapped(vm, BASE, 8, PROT_NONE)
    assert vm.mprotect(BASE, pages(3), RW) == OK
    assert vm.charged_bytes == pages(3)


@pytest.mark.parametrize("mode", [0, 1])
def test_mprotect_rw_of_noreserve_not_charged_modes_0_1(mode: int) -> None:
    """B.2 [K, E]: reserve with MAP_NORESERVE then mprotect(RW) never charges in modes 0/1."""
    vm = PosixVM(overcommit_mode=mode)
    reserved(vm, BASE, 8)
    assert vm.mprotect(BASE, pages(8), RW) == OK
    assert vm.charged_bytes == 0
    assert vm.is_writable(BASE, at(8))


def test_mprotect_rw_of_noreserve_charged_mode2() -> None:
    """B.2 [K]: in mode 2 MAP_NORESERVE is ignored, so mprotect(RW) of the reservation charges."""
    vm = PosixVM(overcommit_mode=2)
    reserved(vm, BASE, 8)
    assert vm.charged_bytes == 0
    assert vm.mprotect(BASE, pages(8), RW) == OK
    assert vm.charged_bytes == pages(8)


def test_noreserve_decided_at_mmap_time() -> None:
    """B.2 [K]: VM_NORESERVE is decided at mmap time and survives later sysctl changes."""
    vm = PosixVM(overcommit_mode=0)
    reserved(vm, BASE, 4)
    vm.overcommit_mode = 2
    reserved(vm, at(8), 4)
    vm.overcommit_mode = 0
    assert vm.mprotect(BASE, pages(4), RW) == OK
    assert vm.charged_bytes == 0
    assert vm.mprotect(at(8), pages(4), RW) == OK
    assert vm.charged_bytes == pages(4)


def test_mprotect_none_refunds_untouched() -> None:
    """B.2 [K, E]: mprotect back to PROT_NONE refunds the charge of a never-written mapping."""
    vm = PosixVM()
    mapped(vm, BASE, 4, RW)
    assert vm.mprotect(BASE, pages(4), PROT_NONE) == OK
    assert vm.charged_bytes == 0


def test_mprotect_readonly_refunds_untouched() -> None:
    """B.2 [K]: mprotect to any non-writable protection refunds an untouched mapping."""
    vm = PosixVM()
    mapped(vm, BASE, 4, PROT_NONE)
    assert vm.mprotect(BASE, pages(4), RW) == OK
    assert vm.mprotect(BASE, pages(4), PROT_READ) == OK
    assert vm.charged_bytes == 0


def test_mprotect_none_keeps_charge_when_touched() -> None:
    """B.2 [K, E]: once the mapping was written, mprotect(PROT_NONE) keeps the charge."""
    vm = PosixVM()
    mapped(vm, BASE, 4, RW)
    vm.write(BASE, b"x")
    assert vm.mprotect(BASE, pages(4), PROT_NONE) == OK
    assert vm.charged_bytes == pages(4)


def test_touch_anywhere_keeps_charge_of_whole_vma() -> None:
    """B.2 [K]: a write gives the whole VMA an anon_vma: its unwritten split is not refunded."""
    vm = PosixVM()
    mapped(vm, BASE, 4, RW)
    vm.write(BASE, b"x")
    assert vm.mprotect(at(3), PAGE, PROT_NONE) == OK
    assert vm.charged_bytes == pages(4)


def test_mapping_merged_into_touched_neighbour_not_refunded() -> None:
    """B.1 [E] merge + B.2 [K]: an RW mapping merged into a written one has its anon_vma."""
    vm = PosixVM()
    mapped(vm, BASE, 4, RW)
    vm.write(BASE, b"x")
    mapped(vm, at(4), 4, RW)
    assert vm.charged_bytes == pages(8)
    assert vm.mprotect(at(4), pages(4), PROT_NONE) == OK
    assert vm.charged_bytes == pages(8)


def test_mprotect_rw_again_does_not_double_charge() -> None:
    """B.2 [K]: mprotect to writable does not charge a VMA that already has VM_ACCOUNT."""
    vm = PosixVM()
    mapped(vm, BASE, 4, RW)
    vm.write(BASE, b"x")
    assert vm.mprotect(BASE, pages(4), PROT_NONE) == OK
    assert vm.mprotect(BASE, pages(4), RW) == OK
    assert vm.charged_bytes == pages(4)


def test_madvise_dontneed_keeps_charge() -> None:
    """B.2 [E]: MADV_DONTNEED frees pages but never changes the commit charge."""
    vm = PosixVM()
    mapped(vm, BASE, 4, RW)
    fill(vm, BASE, 4, 0x10)
    assert vm.madvise(BASE, pages(4), MADV_DONTNEED) == OK
    assert vm.charged_bytes == pages(4)


def test_munmap_refunds_charge() -> None:
    """B.2 [E]: munmap releases the charge, also of written pages."""
    vm = PosixVM()
    mapped(vm, BASE, 4, RW)
    vm.write(BASE, b"x")
    assert vm.munmap(at(1), pages(3)) == OK
    assert vm.charged_bytes == PAGE
    assert vm.munmap(BASE, PAGE) == OK
    assert vm.charged_bytes == 0


def test_map_fixed_prot_none_noreserve_releases_charge() -> None:
    """B.1 decommit / B.2 [E]: mmap(MAP_FIXED, PROT_NONE, NORESERVE) drops pages and charge."""
    vm = PosixVM()
    mapped(vm, BASE, 4, RW)
    fill(vm, BASE, 4, 0x66)
    flags = PRIVATE_ANON | NORESERVE | MAP_FIXED
    assert vm.mmap(BASE, pages(4), PROT_NONE, flags, -1, 0) == PosixResult(BASE)
    assert vm.charged_bytes == 0
    assert vm.mprotect(BASE, pages(4), RW) == OK
    assert vm.charged_bytes == 0
    assert vm.expected(BASE, pages(4)) == zeros(4)


# ------------------------------------------------------------- B.4 macOS


def test_darwin_madvise_hole_einval() -> None:
    """B.4 [X]: on macOS madvise over an unmapped range -> EINVAL (Linux: ENOMEM)."""
    vm = PosixVM(flavor=DARWIN)
    mapped(vm, BASE, 1, RW, flavor=DARWIN)
    assert vm.madvise(BASE, pages(2), MADV_DONTNEED) == FAIL_EINVAL
    assert vm.madvise(at(4), pages(2), MADV_NORMAL) == FAIL_EINVAL


def test_darwin_mmap_write_implies_read() -> None:
    """B.4 [X]: on macOS mmap with PROT_WRITE or PROT_EXEC implies PROT_READ."""
    vm = PosixVM(flavor=DARWIN)
    mapped(vm, BASE, 1, PROT_WRITE, flavor=DARWIN)
    mapped(vm, at(2), 1, PROT_EXEC, flavor=DARWIN)
    assert vm.prot_at(BASE) == RW
    assert vm.prot_at(at(2)) == PROT_READ | PROT_EXEC


def test_darwin_mprotect_write_implies_read() -> None:
    """B.4 [X]: on macOS mprotect with PROT_WRITE or PROT_EXEC implies PROT_READ."""
    vm = PosixVM(flavor=DARWIN)
    mapped(vm, BASE, 2, PROT_NONE, flavor=DARWIN)
    assert vm.mprotect(BASE, PAGE, PROT_WRITE) == OK
    assert vm.mprotect(at(1), PAGE, PROT_EXEC) == OK
    assert vm.prot_at(BASE) == RW
    assert vm.prot_at(at(1)) == PROT_READ | PROT_EXEC


def test_linux_write_does_not_imply_read() -> None:
    """B.3 [M]: Linux reports PROT_WRITE alone as requested (-w-p), unlike macOS."""
    vm = PosixVM()
    mapped(vm, BASE, 1, PROT_WRITE)
    assert vm.prot_at(BASE) == PROT_WRITE


def test_darwin_no_commit_accounting() -> None:
    """B.4 [X]: XNU does no commit accounting: RW mmap and mprotect(RW) charge nothing."""
    vm = PosixVM(flavor=DARWIN)
    mapped(vm, BASE, 4, RW, flavor=DARWIN)
    mapped(vm, at(8), 4, PROT_NONE, flavor=DARWIN)
    assert vm.mprotect(at(8), pages(4), RW) == OK
    assert vm.charged_bytes == 0


# ------------------------------------- B.1 every value the OS defines, against this kernel

ON_LINUX = pytest.mark.skipif(
    not sys.platform.startswith("linux") or platform.machine() != "x86_64",
    reason="the tables' answers were measured on Linux x86_64",
)
MASK = (1 << 64) - 1
SAFE_ADVICE = [v for v in LINUX_ADVICE if v.value not in UNSAFE_ADVICE]
FACT_PROTS = {"none": PROT_NONE, "r": PROT_READ, "rw": RW, "w": PROT_WRITE, "x": PROT_EXEC}
SMAPS_CODES = (*VF, "ac", "nr")


def kernel_model() -> PosixVM:
    """The model parameterised by the running kernel, as the machine builds it."""
    from arenacheck.impl.posix_libc import libc
    from arenacheck.machines.vm_posix import linux_vm

    return linux_vm(libc().page, LINUX)


def model_flags(vm: PosixVM, lo: int, hi: int) -> list[tuple[int, int, frozenset[str]]]:
    out = []
    for run in vm.vmas.overlapping(lo, hi):
        v = run.value
        codes = {c for c in VF if v.has(c)}
        codes |= {c for c, on in (("ac", v.account), ("nr", v.noreserve)) if on}
        out.append((run.start, run.end, frozenset(codes)))
    return out


def kernel_flags(lo: int, hi: int) -> list[tuple[int, int, frozenset[str]]]:
    """smaps' flags the model tracks, over ``[lo, hi)``, with equal neighbours joined."""
    from arenacheck.impl.proc_smaps import vma_flags

    out: list[tuple[int, int, frozenset[str]]] = []
    for k in vma_flags(lo, hi):
        flags = frozenset(k.flags & set(SMAPS_CODES))
        if out and out[-1][1] == k.start and out[-1][2] == flags:
            out[-1] = (out[-1][0], k.end, flags)
        else:
            out.append((k.start, k.end, flags))
    return out


@ON_LINUX
@pytest.mark.parametrize("prot_name", list(FACT_PROTS))
@pytest.mark.parametrize("advice", SAFE_ADVICE, ids=lambda v: v.name)
def test_madvise_every_value_matches_kernel(advice: Value, prot_name: str) -> None:
    """B.1 [E 6.18.44]: madvise(advice) over the middle two of four private anonymous pages
    (written first where writable) answers as the model predicts; the pages read back as
    one of the model's candidates and smaps' flags equal the model's."""
    from arenacheck.impl.posix_libc import libc

    lib, vm = libc(), kernel_model()
    page, prot = lib.page, FACT_PROTS[prot_name]
    flags = PRIVATE_ANON | NORESERVE
    got = lib.mmap(0, 4 * page, prot, flags, -1, 0)
    assert got.value != MAP_FAILED
    base = got.value
    try:
        assert vm.mmap(0, 4 * page, prot, flags, chosen=base) == PosixResult(base)
        if prot & PROT_WRITE:
            data = bytes(i % 251 + 1 for i in range(4 * page))
            ctypes.memmove(base, data[: 4 * page], 4 * page)
            vm.write(base, data[: 4 * page])
        try:
            want = vm.madvise(base + page, 2 * page, advice.value)
        except NotModelled:
            # Only MADV_COLLAPSE over a whole huge page; four pages never hold one.
            pytest.fail(f"{advice.name} not modelled on four pages")
        r = lib.madvise(base + page, 2 * page, advice.value)
        assert (r.value & MASK, r.errno or None) == (want.value & MASK, want.errno)
        if prot & PROT_READ and not vm.is_guarded(base, base + 4 * page):
            read = ctypes.string_at(base, 4 * page)
            assert read in vm.candidates(base, 4 * page)
        assert kernel_flags(base, base + 4 * page) == model_flags(vm, base, base + 4 * page)
    finally:
        lib.munmap(base, 4 * page)


def test_madvise_hwpoison_soft_offline_answers() -> None:
    """B.1 [K mm/madvise.c madvise_behavior_valid, madvise_inject_error]: without
    CONFIG_MEMORY_FAILURE both are unknown advice (EINVAL); with it an unprivileged
    caller gets EPERM and a privileged one would poison pages: outside the model. Never
    called for real (this machine runs as root)."""
    for advice in sorted(UNSAFE_ADVICE):
        vm = PosixVM(config=frozenset({"ksm", "thp"}))
        reserved(vm, BASE, 2)
        assert vm.madvise(BASE, PAGE, advice) == FAIL_EINVAL
        vm = PosixVM(config=frozenset({"memory_failure"}))
        reserved(vm, BASE, 2)
        assert vm.madvise(BASE, PAGE, advice) == PosixResult(-1, EPERM)
        vm = PosixVM(config=frozenset({"memory_failure"}), privileged=True)
        reserved(vm, BASE, 2)
        with pytest.raises(NotModelled):
            vm.madvise(BASE, PAGE, advice)


@pytest.mark.parametrize("advice", [v for v in LINUX_ADVICE if v.since], ids=lambda v: v.name)
def test_madvise_too_old_kernel_einval(advice: Value) -> None:
    """B.1 [K madvise_behavior_valid]: advice newer than the kernel is unknown: EINVAL."""
    assert advice.since is not None
    major, minor, patch = advice.since
    older = (major, minor, patch - 1) if patch else (major, minor - 1, 99)
    vm = PosixVM(kernel=older, config=frozenset({"ksm", "thp", "memory_failure"}))
    reserved(vm, BASE, 2)
    assert vm.madvise(BASE, PAGE, advice.value) == FAIL_EINVAL


@pytest.mark.parametrize("needs", ["ksm", "thp"])
def test_madvise_needs_config(needs: str) -> None:
    """B.1 [K madvise_behavior_valid #ifdef CONFIG_KSM / CONFIG_TRANSPARENT_HUGEPAGE]."""
    vm = PosixVM(config=frozenset({"ksm", "thp"} - {needs}))
    reserved(vm, BASE, 2)
    for v in LINUX_ADVICE:
        if v.needs == needs:
            assert vm.madvise(BASE, PAGE, v.value) == FAIL_EINVAL


def test_madvise_free_reads_old_bytes_or_zeros() -> None:
    """B.1 [K madvise_free_pte_range, E]: after MADV_FREE a page reads back as before or
    as zeros; a later write fixes only the bytes written."""
    vm = PosixVM()
    mapped(vm, BASE, 2, RW)
    data = fill(vm, BASE, 2, 0xAB)
    assert vm.madvise(BASE, pages(2), MADV_FREE) == OK
    assert sorted(vm.candidates(BASE, 4)) == [bytes(4), data[:4]]
    vm.write(BASE, b"zz")
    assert vm.expected(BASE, 2) == b"zz"
    assert sorted(vm.candidates(BASE + 2, 2)) == [bytes(2), data[:2]]


@pytest.mark.parametrize("advice", [MADV_COLD, MADV_PAGEOUT, MADV_WILLNEED])
def test_madvise_hints_keep_bytes(advice: int) -> None:
    """B.1 [K madvise_cold_or_pageout_pte_range, E]: COLD and PAGEOUT keep contents (swap
    keeps them); WILLNEED only reads ahead."""
    vm = PosixVM()
    mapped(vm, BASE, 2, RW)
    data = fill(vm, BASE, 2, 0x5A)
    assert vm.madvise(BASE, pages(2), advice) == OK
    assert vm.expected(BASE, pages(2)) == data


def test_madvise_guard_pages() -> None:
    """B.1 [K madvise_guard_install, E]: guards zap the pages, survive DONTNEED and
    mprotect, make POPULATE fail EFAULT, give the VMA an anon_vma; remove reads zeros."""
    vm = PosixVM()
    mapped(vm, BASE, 4, RW)
    fill(vm, BASE, 4, 0x11)
    assert vm.madvise(at(1), PAGE, MADV_GUARD_INSTALL) == OK
    assert vm.is_guarded(at(1), at(2)) and not vm.is_guarded(BASE, at(1))
    assert vm.madvise(BASE, pages(4), MADV_DONTNEED) == OK
    assert vm.mprotect(BASE, pages(4), PROT_READ) == OK
    assert vm.is_guarded(at(1), at(2))
    assert vm.madvise(BASE, PAGE, MADV_POPULATE_READ) == OK
    assert vm.madvise(BASE, pages(4), MADV_POPULATE_READ) == PosixResult(-1, EFAULT)
    assert vm.madvise(at(1), PAGE, MADV_GUARD_REMOVE) == OK
    assert vm.expected(at(1), PAGE) == zeros(1)
    assert vm.mmap(at(1), PAGE, RW, PRIVATE_ANON | MAP_FIXED, -1, 0) == PosixResult(at(1))
    assert vm.madvise(at(1), PAGE, MADV_GUARD_INSTALL) == OK
    with pytest.raises(ValueError, match="guard"):
        vm.write(at(1), b"x")


def test_madvise_guard_install_keeps_charge() -> None:
    """B.2 [E 6.18.44]: a guard install gives the VMA an anon_vma, so PROT_NONE refunds nothing."""
    vm = PosixVM()
    mapped(vm, BASE, 4, RW)
    assert vm.madvise(BASE, PAGE, MADV_GUARD_INSTALL) == OK
    assert vm.mprotect(BASE, pages(4), PROT_NONE) == OK
    assert vm.charged_bytes == pages(4)


@pytest.mark.parametrize(
    ("advice", "touched"), [(MADV_POPULATE_WRITE, True), (MADV_POPULATE_READ, False)]
)
def test_madvise_populate_charge(advice: int, touched: bool) -> None:
    """B.2 [E 6.18.44]: POPULATE_WRITE write-faults (anon_vma: no refund); POPULATE_READ maps
    the zero page (refund)."""
    vm = PosixVM()
    mapped(vm, BASE, 4, RW)
    assert vm.madvise(BASE, pages(4), advice) == OK
    assert vm.mprotect(BASE, pages(4), PROT_NONE) == OK
    assert vm.charged_bytes == (pages(4) if touched else 0)


def test_madvise_populate_and_remove_across_hole() -> None:
    """B.1 [K madvise_populate, madvise_remove; E]: POPULATE stops at a hole with ENOMEM;
    REMOVE fails EINVAL at the first private VMA; a flag advice changes every mapped part
    and then answers ENOMEM."""
    vm = PosixVM()
    mapped(vm, BASE, 2, RW)
    mapped(vm, at(4), 2, RW)
    assert vm.madvise(BASE, pages(6), MADV_POPULATE_WRITE) == FAIL_ENOMEM
    assert vm.madvise(BASE, pages(6), MADV_REMOVE) == FAIL_EINVAL
    assert vm.madvise(BASE, pages(6), MADV_HUGEPAGE) == FAIL_ENOMEM
    assert all(r.value.has("hg") for r in vm.vmas)


def test_madvise_wrapping_length_einval() -> None:
    """B.1 [K is_valid_madvise, E]: a length that wraps the address space: EINVAL."""
    vm = PosixVM()
    mapped(vm, BASE, 2, RW)
    assert vm.madvise(BASE, (1 << 64) - PAGE, MADV_DONTNEED) == FAIL_EINVAL
    assert vm.madvise(BASE, (1 << 64) - 1, MADV_DONTNEED) == FAIL_EINVAL


# Types and flags whose real call is made by the fact test; the rest are pinned below.
MAP_CASES = [
    (t, f)
    for t in LINUX_MAP_TYPES
    for f in LINUX_MAP_FLAGS
    if t.value != 0x01
    and not f.value & (MAP_FIXED | NOREPLACE)
    and not (f.value & 0x40000 and t.value in (0x02, 0x03))
]


@ON_LINUX
@pytest.mark.parametrize("prot_name", ["rw", "none"])
@pytest.mark.parametrize(("mtype", "flag"), MAP_CASES, ids=lambda v: v.name)
def test_mmap_every_type_and_flag_matches_kernel(mtype: Value, flag: Value, prot_name: str) -> None:
    """B.1 [E 6.18.44]: an anonymous two-page mmap of each type and flag answers as the
    model predicts, with the model's smaps flags (nh for MAP_STACK, sf for MAP_SYNC, dp wf
    dd nr for MAP_DROPPABLE, lo for MAP_LOCKED, gd for MAP_GROWSDOWN)."""
    from arenacheck.impl.posix_libc import libc

    lib, vm = libc(), kernel_model()
    prot, n = FACT_PROTS[prot_name], 2 * lib.page
    flags = mtype.value | ANON | flag.value
    got = lib.mmap(0, n, prot, flags, -1, 0)
    try:
        chosen = None if got.value == MAP_FAILED else got.value
        want = vm.mmap(0, n, prot, flags, -1, 0, chosen=chosen)
        assert (got.value, got.errno or None) == (want.value, want.errno)
        if want.ok:
            assert kernel_flags(want.value, want.value + n) == model_flags(
                vm, want.value, want.value + n
            )
    finally:
        if got.value != MAP_FAILED:
            lib.munmap(got.value, n)


@ON_LINUX
def test_mmap_hugetlb_without_reserved_pages_enomem() -> None:
    """B.1 [K hugetlb_reserve_pages, E]: MAP_HUGETLB without free huge pages: ENOMEM, and
    an unknown huge-size encoding EINVAL; with MAP_NORESERVE it would map pages that fault
    SIGBUS, which the model does not follow."""
    from arenacheck.impl.posix_libc import libc
    from arenacheck.machines.vm_posix import hugetlb_free_pages

    if hugetlb_free_pages():
        pytest.skip("this machine has free huge pages reserved")
    lib, vm = libc(), kernel_model()
    for flags, want in (
        (PRIVATE_ANON | 0x40000, MMAP_ENOMEM),
        (PRIVATE_ANON | 0x40000 | (13 << 26), MMAP_EINVAL),
        (ANON | 0x40000, MMAP_EINVAL),
    ):
        assert vm.mmap(0, PAGE, RW, flags, -1, 0) == want
        got = lib.mmap(0, PAGE, RW, flags, -1, 0)
        assert (got.value, got.errno) == (want.value, want.errno)
    with pytest.raises(NotModelled):
        vm.mmap(0, PAGE, RW, PRIVATE_ANON | 0x40000 | NORESERVE, -1, 0)


def test_mmap_droppable_needs_6_11() -> None:
    """B.1 [K do_mmap MAP_DROPPABLE]: before 6.11 type 0x08 is unknown: EINVAL; since,
    never charged, and refused with MAP_LOCKED or MAP_GROWSDOWN."""
    old = PosixVM(kernel=(6, 10, 0))
    assert old.mmap(0, PAGE, RW, 0x08 | ANON, -1, 0, chosen=BASE) == MMAP_EINVAL
    vm = PosixVM()
    assert vm.mmap(0, PAGE, RW, 0x08 | ANON, -1, 0, chosen=BASE) == PosixResult(BASE)
    assert vm.charged_bytes == 0
    assert vm.mmap(0, PAGE, RW, 0x08 | ANON | 0x2000, -1, 0, chosen=at(4)) == MMAP_EINVAL
    assert vm.mmap(0, PAGE, RW, 0x08 | ANON | 0x100, -1, 0, chosen=at(4)) == MMAP_EINVAL
    vm.write(BASE, b"abc")
    assert sorted(vm.candidates(BASE, 3)) == [bytes(3), b"abc"]


@ON_LINUX
def test_mmap_fixed_at_end_of_address_space() -> None:
    """B.1 [K __get_unmapped_area, E]: MAP_FIXED at or past TASK_SIZE (0x7ffffffff000 on
    47-bit x86_64) or straddling it: ENOMEM; the last page below it maps."""
    from arenacheck.impl.posix_libc import libc

    lib, vm = libc(), PosixVM()
    last = TASK_SIZE - PAGE
    for addr, n in ((TASK_SIZE, PAGE), (1 << 47, PAGE), ((1 << 64) - PAGE, PAGE), (last, 2 * PAGE)):
        flags = PRIVATE_ANON | NORESERVE | NOREPLACE
        assert vm.mmap(addr, n, PROT_NONE, flags, -1, 0) == MMAP_ENOMEM
        got = lib.mmap(addr, n, PROT_NONE, flags, -1, 0)
        assert (got.value, got.errno) == (MAP_FAILED, ENOMEM)
    # Plain MAP_FIXED too: beyond TASK_SIZE the kernel refuses before it unmaps anything;
    # straddling it is held by the model alone, since a real call could replace the last page.
    for addr, n in ((TASK_SIZE, PAGE), (1 << 47, PAGE), ((1 << 64) - PAGE, PAGE), (last, 2 * PAGE)):
        flags = PRIVATE_ANON | NORESERVE | MAP_FIXED
        assert vm.mmap(addr, n, PROT_NONE, flags, -1, 0) == MMAP_ENOMEM
        if addr >= TASK_SIZE:
            got = lib.mmap(addr, n, PROT_NONE, flags, -1, 0)
            assert (got.value, got.errno) == (MAP_FAILED, ENOMEM)
    # NOREPLACE, not FIXED: whatever might live in the last page is never replaced.
    got = lib.mmap(last, PAGE, PROT_NONE, PRIVATE_ANON | NORESERVE | NOREPLACE, -1, 0)
    try:
        want = vm.mmap(last, PAGE, PROT_NONE, PRIVATE_ANON | NORESERVE | NOREPLACE, -1, 0)
        assert want == PosixResult(last)
        assert got.value in (last, MAP_FAILED)
        if got.value == MAP_FAILED:
            assert got.errno == EEXIST  # someone else holds it: the model's world is only ours
    finally:
        if got.value == last:
            lib.munmap(last, PAGE)


def test_mmap_fixed_below_mmap_min_addr() -> None:
    """B.1 [K cap_mmap_addr]: below vm.mmap_min_addr only a privileged caller may map."""
    vm = PosixVM(mmap_min_addr=65536)
    assert vm.mmap(0, PAGE, PROT_NONE, PRIVATE_ANON | MAP_FIXED, -1, 0) == PosixResult(
        MAP_FAILED, EPERM
    )
    vm = PosixVM(mmap_min_addr=65536, privileged=True)
    assert vm.mmap(PAGE, PAGE, PROT_NONE, PRIVATE_ANON | MAP_FIXED, -1, 0) == PosixResult(PAGE)


@ON_LINUX
@pytest.mark.parametrize("prot", [v for v in LINUX_PROTS], ids=lambda v: v.name)
def test_mprotect_and_mmap_every_prot_match_kernel(prot: Value) -> None:
    """B.1 [K do_mprotect_pkey, arch_validate_prot; E 6.18.44]: mmap ignores unknown bits;
    mprotect accepts PROT_SEM, refuses other unknown bits, and refuses PROT_GROWSDOWN /
    PROT_GROWSUP on a VMA that does not grow (EINVAL; both at once: EINVAL before anything)."""
    from arenacheck.impl.posix_libc import libc

    lib, vm = libc(), kernel_model()
    n = 4 * lib.page
    got = lib.mmap(0, n, prot.value, PRIVATE_ANON | NORESERVE, -1, 0)
    assert got.value != MAP_FAILED
    base = got.value
    try:
        assert vm.mmap(0, n, prot.value, PRIVATE_ANON | NORESERVE, chosen=base) == PosixResult(base)
        assert kernel_flags(base, base + n) == model_flags(vm, base, base + n)
        for addr in (base + lib.page, base + 1):
            want = vm.mprotect(addr, lib.page, prot.value ^ PROT_WRITE)
            r = lib.mprotect(addr, lib.page, prot.value ^ PROT_WRITE)
            assert (r.value, r.errno or None) == (want.value, want.errno)
        assert vm.expected_view(base, base + n) == _kernel_view(base, base + n)
    finally:
        lib.munmap(base, n)


def _kernel_view(lo: int, hi: int) -> list[OsSpan]:
    from arenacheck.impl.host import region_reader

    return merge_spans(region_reader().spans_in(lo, hi))


def test_mprotect_growsdown_on_hole_enomem() -> None:
    """B.1 [K do_mprotect_pkey]: PROT_GROWSDOWN / PROT_GROWSUP find no VMA: ENOMEM."""
    vm = PosixVM()
    reserved(vm, BASE, 2)
    assert vm.mprotect(at(4), PAGE, PROT_READ | 0x01000000) == FAIL_ENOMEM
    assert vm.mprotect(at(4), PAGE, PROT_READ | 0x02000000) == FAIL_ENOMEM
    assert vm.mprotect(BASE + 1, PAGE, 0x03000000) == FAIL_EINVAL


@ON_LINUX
def test_map_locked_refuses_dontneed_free_lru_guard() -> None:
    """B.1 [K madvise_dontneed_free_valid_vma, can_madv_lru_vma, is_valid_guard_vma; E]."""
    from arenacheck.impl.posix_libc import libc

    lib, vm = libc(), kernel_model()
    n = 2 * lib.page
    got = lib.mmap(0, n, RW, PRIVATE_ANON | 0x2000, -1, 0)
    if got.value == MAP_FAILED:
        pytest.skip(f"MAP_LOCKED refused here (errno {got.errno}): RLIMIT_MEMLOCK")
    try:
        assert vm.mmap(0, n, RW, PRIVATE_ANON | 0x2000, chosen=got.value).ok
        for advice in (
            MADV_DONTNEED,
            MADV_FREE,
            MADV_COLD,
            MADV_PAGEOUT,
            MADV_GUARD_INSTALL,
            MADV_DONTNEED_LOCKED,
            MADV_GUARD_REMOVE,
        ):
            want = vm.madvise(got.value, n, advice)
            r = lib.madvise(got.value, n, advice)
            assert (r.value, r.errno or None) == (want.value, want.errno), advice
    finally:
        lib.munmap(got.value, n)


def test_map_count_split_rules() -> None:
    """B.2 [K do_mmap, split_vma, vms_gather_munmap_vmas; E 6.18.44 test_map_count.py]."""
    vm = PosixVM(max_map_count=5)
    reserved(vm, BASE, 16)
    vm.foreign_vmas = 2  # map_count 3
    assert vm.mprotect(at(2), PAGE, PROT_READ) == OK  # +2 -> 5
    assert vm.map_count == 5
    assert vm.munmap(at(8), PAGE) == FAIL_ENOMEM
    assert vm.madvise(at(8), PAGE, MADV_DONTDUMP) == PosixResult(-1, EAGAIN)
    assert vm.munmap(at(2), PAGE) == OK  # -> 4
    assert vm.mprotect(at(8), PAGE, PROT_READ) == FAIL_ENOMEM  # first split stays
    assert vm.map_count == 5
    assert vm.mmap(at(2), PAGE, RW, PRIVATE_ANON | MAP_FIXED, -1, 0) == PosixResult(at(2))
    assert vm.map_count == 6
    assert vm.mmap(at(12), PAGE, PROT_NONE, PRIVATE_ANON | NORESERVE | MAP_FIXED, -1, 0) == (
        MMAP_ENOMEM
    )


def test_separately_written_vmas_never_merge() -> None:
    """B.1 [K is_mergeable_anon_vma, E 6.18.44]: two VMAs written apart have two anon_vmas;
    made equal again, the middle merges with the previous one only (2 VMAs, not 1)."""
    vm = PosixVM()
    mapped(vm, BASE, 3, RW)
    assert vm.mprotect(at(1), PAGE, PROT_READ) == OK
    vm.write(BASE, b"a")
    vm.write(at(2), b"b")
    assert vm.mprotect(at(1), PAGE, RW) == OK
    assert [(a - BASE, b - BASE) for a, b, _ in vm.kernel_vmas(BASE, at(3))] == [
        (0, pages(2)),
        (pages(2), pages(3)),
    ]


def test_a_vma_written_beside_a_touched_one_reuses_its_anon_vma() -> None:
    """B.1 [K find_mergeable_anon_vma]: flags that differ only in PROT_EXEC let the second
    write reuse the first VMA's anon_vma, so the two merge once the protections agree."""
    vm = PosixVM()
    mapped(vm, BASE, 2, RW)
    assert vm.mprotect(at(1), PAGE, RW | PROT_EXEC) == OK
    vm.write(BASE, b"a")
    vm.write(at(1), b"b")
    assert vm.mprotect(at(1), PAGE, RW) == OK
    assert len(vm.kernel_vmas(BASE, at(2))) == 1


def test_mprotect_with_prot_sem_neither_splits_nor_changes_the_vma() -> None:
    """B.1 [K calc_vm_prot_bits, E 6.18.44]: PROT_SEM is accepted on x86 and sets no vm_flags
    bit: mprotect(PROT_READ | PROT_SEM) of one page of a PROT_READ mapping splits nothing."""
    vm = PosixVM()
    mapped(vm, BASE, 2, PROT_READ)
    assert vm.mprotect(BASE, PAGE, PROT_READ | 0x8) == OK
    assert len(vm.kernel_vmas(BASE, at(2))) == 1
