"""POSIX virtual-memory constants per kernel (docs/VM_SEMANTICS.md B.5)."""

from __future__ import annotations

from dataclasses import dataclass

PROT_NONE = 0
PROT_READ = 1
PROT_WRITE = 2
PROT_EXEC = 4
PROT_SEM = 8

MAP_SHARED = 0x01
MAP_PRIVATE = 0x02
MAP_FIXED = 0x10

ENOMEM = 12
EINVAL = 22
EEXIST = 17
EACCES = 13
EPERM = 1

MADV_NORMAL = 0
MADV_RANDOM = 1
MADV_SEQUENTIAL = 2
MADV_WILLNEED = 3
MADV_DONTNEED = 4


@dataclass(frozen=True)
class PosixFlavor:
    """The constants and behaviours that differ between Linux and macOS."""

    name: str
    map_anonymous: int
    map_noreserve: int
    map_fixed_noreplace: int | None
    madv_free: int
    sc_pagesize: int
    # Protection bits beyond rwx that mprotect accepts (Linux: PROT_SEM; arm64 adds
    # PROT_BTI and PROT_MTE).
    extra_prot_bits: int = 0
    # XNU: PROT_WRITE or PROT_EXEC imply PROT_READ (B.4).
    write_implies_read: bool = False
    # XNU: madvise on an unmapped range is EINVAL; Linux processes the mapped part, then ENOMEM.
    madvise_hole_errno: int = ENOMEM
    # Linux tracks commit charge (Committed_AS); XNU does no accounting (B.4).
    accounts_commit: bool = True


LINUX = PosixFlavor(
    name="linux",
    map_anonymous=0x20,
    map_noreserve=0x4000,
    map_fixed_noreplace=0x100000,
    madv_free=8,
    sc_pagesize=30,
    extra_prot_bits=PROT_SEM,
)

LINUX_ARM64 = PosixFlavor(
    name="linux-arm64",
    map_anonymous=0x20,
    map_noreserve=0x4000,
    map_fixed_noreplace=0x100000,
    madv_free=8,
    sc_pagesize=30,
    extra_prot_bits=PROT_SEM | 0x30,
)

DARWIN = PosixFlavor(
    name="darwin",
    map_anonymous=0x1000,
    map_noreserve=0x40,
    map_fixed_noreplace=None,
    madv_free=5,
    sc_pagesize=29,
    write_implies_read=True,
    madvise_hole_errno=EINVAL,
    accounts_commit=False,
)
