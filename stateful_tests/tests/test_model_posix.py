"""The POSIX reference model against docs/VM_SEMANTICS.md B.1, B.2 and B.4 (macOS).

Each test pins one fact of the spec; its docstring names the section and evidence tag.
"""

from __future__ import annotations

import pytest
from arenacheck.model.posix_constants import (
    DARWIN,
    EEXIST,
    EINVAL,
    ENOMEM,
    LINUX,
    LINUX_ARM64,
    MADV_DONTNEED,
    MADV_NORMAL,
    MAP_FIXED,
    MAP_PRIVATE,
    MAP_SHARED,
    PROT_EXEC,
    PROT_NONE,
    PROT_READ,
    PROT_WRITE,
    PosixFlavor,
)
from arenacheck.model.posix_vm import MAP_FAILED, NotModelled, PosixResult, PosixVM

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
