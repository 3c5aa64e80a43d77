"""POSIX virtual-memory constants per kernel (docs/VM_SEMANTICS.md B.5)."""

from __future__ import annotations

import re
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
EAGAIN = 11
EFAULT = 14
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


# ---------------------------------------------------------------------------------------
# Every madvise advice, mmap flag and protection bit Linux's UAPI headers define, with the
# kernel version that introduced it, plus values no kernel defines (B.1, B.5). Sources:
# include/uapi/asm-generic/mman-common.h, include/uapi/asm-generic/mman.h,
# include/uapi/linux/mman.h, arch/x86/include/uapi/asm/mman.h; versions from the commits
# that added each value (madvise.2 and mmap.2 "since Linux ..."). Every value a machine
# draws is in one of these tables, so the model is asked about the OS's whole range.

KernelVersion = tuple[int, int, int]


def parse_release(release: str) -> KernelVersion:
    """``os.uname().release`` ("6.18.44-fc-v657") as a comparable triple."""
    m = re.match(r"(\d+)\.(\d+)(?:\.(\d+))?", release)
    if m is None:
        raise ValueError(f"not a Linux release string: {release!r}")
    return int(m.group(1)), int(m.group(2)), int(m.group(3) or 0)


@dataclass(frozen=True)
class Value:
    """One named value; ``since`` None marks a value no kernel defines."""

    name: str
    value: int
    since: KernelVersion | None
    # The kernel config option the value needs, if any ("ksm", "thp", "memory_failure").
    needs: str | None = None


# ------------------------------------------------------------------ madvise advice

MADV_FREE = 8
MADV_REMOVE = 9
MADV_DONTFORK = 10
MADV_DOFORK = 11
MADV_MERGEABLE = 12
MADV_UNMERGEABLE = 13
MADV_HUGEPAGE = 14
MADV_NOHUGEPAGE = 15
MADV_DONTDUMP = 16
MADV_DODUMP = 17
MADV_WIPEONFORK = 18
MADV_KEEPONFORK = 19
MADV_COLD = 20
MADV_PAGEOUT = 21
MADV_POPULATE_READ = 22
MADV_POPULATE_WRITE = 23
MADV_DONTNEED_LOCKED = 24
MADV_COLLAPSE = 25
MADV_HWPOISON = 100
MADV_SOFT_OFFLINE = 101
MADV_GUARD_INSTALL = 102
MADV_GUARD_REMOVE = 103

LINUX_ADVICE: tuple[Value, ...] = (
    Value("MADV_NORMAL", MADV_NORMAL, (1, 0, 0)),
    Value("MADV_RANDOM", MADV_RANDOM, (1, 0, 0)),
    Value("MADV_SEQUENTIAL", MADV_SEQUENTIAL, (1, 0, 0)),
    Value("MADV_WILLNEED", MADV_WILLNEED, (1, 0, 0)),
    Value("MADV_DONTNEED", MADV_DONTNEED, (1, 0, 0)),
    Value("MADV_FREE", MADV_FREE, (4, 5, 0)),
    Value("MADV_REMOVE", MADV_REMOVE, (2, 6, 16)),
    Value("MADV_DONTFORK", MADV_DONTFORK, (2, 6, 16)),
    Value("MADV_DOFORK", MADV_DOFORK, (2, 6, 16)),
    Value("MADV_MERGEABLE", MADV_MERGEABLE, (2, 6, 32), "ksm"),
    Value("MADV_UNMERGEABLE", MADV_UNMERGEABLE, (2, 6, 32), "ksm"),
    Value("MADV_HUGEPAGE", MADV_HUGEPAGE, (2, 6, 38), "thp"),
    Value("MADV_NOHUGEPAGE", MADV_NOHUGEPAGE, (2, 6, 38), "thp"),
    Value("MADV_DONTDUMP", MADV_DONTDUMP, (3, 4, 0)),
    Value("MADV_DODUMP", MADV_DODUMP, (3, 4, 0)),
    Value("MADV_WIPEONFORK", MADV_WIPEONFORK, (4, 14, 0)),
    Value("MADV_KEEPONFORK", MADV_KEEPONFORK, (4, 14, 0)),
    Value("MADV_COLD", MADV_COLD, (5, 4, 0)),
    Value("MADV_PAGEOUT", MADV_PAGEOUT, (5, 4, 0)),
    Value("MADV_POPULATE_READ", MADV_POPULATE_READ, (5, 14, 0)),
    Value("MADV_POPULATE_WRITE", MADV_POPULATE_WRITE, (5, 14, 0)),
    Value("MADV_DONTNEED_LOCKED", MADV_DONTNEED_LOCKED, (5, 18, 0)),
    Value("MADV_COLLAPSE", MADV_COLLAPSE, (6, 1, 0), "thp"),
    Value("MADV_HWPOISON", MADV_HWPOISON, (2, 6, 32), "memory_failure"),
    Value("MADV_SOFT_OFFLINE", MADV_SOFT_OFFLINE, (2, 6, 33), "memory_failure"),
    Value("MADV_GUARD_INSTALL", MADV_GUARD_INSTALL, (6, 13, 0)),
    Value("MADV_GUARD_REMOVE", MADV_GUARD_REMOVE, (6, 13, 0)),
    # Numbers no kernel defines: the gaps 5-7 and 26.., one past the guard pair, and
    # values an int argument can carry but no table reaches.
    Value("advice 5", 5, None),
    Value("advice 7", 7, None),
    Value("advice 26", 26, None),
    Value("advice 99", 99, None),
    Value("advice 104", 104, None),
    Value("advice 0x7fffffff", 0x7FFFFFFF, None),
    Value("advice -1", -1, None),
)

# Advice whose real call could damage the machine: HWPOISON and SOFT_OFFLINE take pages
# out of service for the whole system when the caller holds CAP_SYS_ADMIN (we run as root).
UNSAFE_ADVICE = frozenset({MADV_HWPOISON, MADV_SOFT_OFFLINE})

# ------------------------------------------------------------------ mmap flags

MAP_TYPE = 0x0F
MAP_SHARED_VALIDATE = 0x03
MAP_DROPPABLE = 0x08
MAP_ANONYMOUS = 0x20
MAP_32BIT = 0x40
MAP_ABOVE4G = 0x80
MAP_GROWSDOWN = 0x0100
MAP_DENYWRITE = 0x0800
MAP_EXECUTABLE = 0x1000
MAP_LOCKED = 0x2000
MAP_NORESERVE = 0x4000
MAP_POPULATE = 0x8000
MAP_NONBLOCK = 0x10000
MAP_STACK = 0x20000
MAP_HUGETLB = 0x40000
MAP_SYNC = 0x80000
MAP_FIXED_NOREPLACE = 0x100000
MAP_UNINITIALIZED = 0x4000000
MAP_HUGE_SHIFT = 26
MAP_HUGE_2MB = 21 << MAP_HUGE_SHIFT
MAP_HUGE_1GB = 30 << MAP_HUGE_SHIFT

# Mapping types (the low nibble); only SHARED, PRIVATE, SHARED_VALIDATE and DROPPABLE exist.
LINUX_MAP_TYPES: tuple[Value, ...] = (
    Value("no type", 0, None),
    Value("MAP_SHARED", MAP_SHARED, (1, 0, 0)),
    Value("MAP_PRIVATE", MAP_PRIVATE, (1, 0, 0)),
    Value("MAP_SHARED_VALIDATE", MAP_SHARED_VALIDATE, (4, 15, 0)),
    Value("type 4", 4, None),
    Value("MAP_DROPPABLE", MAP_DROPPABLE, (6, 11, 0)),
    Value("type 9", 9, None),
    Value("type 0xf", 0xF, None),
)

# Flag bits beside the type (MAP_ANONYMOUS is always set by the machine).
LINUX_MAP_FLAGS: tuple[Value, ...] = (
    Value("no flag", 0, (1, 0, 0)),
    Value("MAP_FIXED", MAP_FIXED, (1, 0, 0)),
    Value("MAP_32BIT", MAP_32BIT, (2, 4, 20)),
    Value("MAP_ABOVE4G", MAP_ABOVE4G, (6, 6, 0)),
    Value("MAP_GROWSDOWN", MAP_GROWSDOWN, (1, 0, 0)),
    Value("MAP_DENYWRITE", MAP_DENYWRITE, (1, 0, 0)),
    Value("MAP_EXECUTABLE", MAP_EXECUTABLE, (1, 0, 0)),
    Value("MAP_LOCKED", MAP_LOCKED, (2, 5, 37)),
    Value("MAP_NORESERVE", MAP_NORESERVE, (1, 0, 0)),
    Value("MAP_POPULATE", MAP_POPULATE, (2, 5, 46)),
    Value("MAP_NONBLOCK", MAP_NONBLOCK, (2, 5, 46)),
    Value("MAP_STACK", MAP_STACK, (2, 6, 27)),
    Value("MAP_HUGETLB", MAP_HUGETLB, (2, 6, 32)),
    Value("MAP_SYNC", MAP_SYNC, (4, 15, 0)),
    Value("MAP_FIXED_NOREPLACE", MAP_FIXED_NOREPLACE, (4, 17, 0)),
    Value("MAP_UNINITIALIZED", MAP_UNINITIALIZED, (2, 6, 33)),
    Value("MAP_HUGE_2MB bits", MAP_HUGE_2MB, (3, 8, 0)),
    Value("MAP_HUGE_1GB bits", MAP_HUGE_1GB, (3, 8, 0)),
    # Bits no kernel defines on x86_64.
    Value("flag 0x200", 0x200, None),
    Value("flag 0x400", 0x400, None),
    Value("flag 0x200000", 0x200000, None),
    Value("flag 0x2000000", 0x2000000, None),
)

# ------------------------------------------------------------------ protections

PROT_BTI = 0x10  # arm64 only
PROT_MTE = 0x20  # arm64 only
PROT_GROWSDOWN = 0x01000000
PROT_GROWSUP = 0x02000000

LINUX_PROTS: tuple[Value, ...] = (
    Value("PROT_NONE", PROT_NONE, (1, 0, 0)),
    Value("PROT_READ", PROT_READ, (1, 0, 0)),
    Value("PROT_WRITE", PROT_WRITE, (1, 0, 0)),
    Value("PROT_READ|PROT_WRITE", PROT_READ | PROT_WRITE, (1, 0, 0)),
    Value("PROT_READ|PROT_EXEC", PROT_READ | PROT_EXEC, (1, 0, 0)),
    Value("PROT_SEM|PROT_READ", PROT_SEM | PROT_READ, (2, 4, 0)),
    Value("PROT_BTI", PROT_BTI, (5, 8, 0)),
    Value("PROT_MTE", PROT_MTE, (5, 10, 0)),
    Value("PROT_GROWSDOWN|PROT_READ", PROT_GROWSDOWN | PROT_READ, (2, 6, 0)),
    Value("PROT_GROWSUP|PROT_READ", PROT_GROWSUP | PROT_READ, (2, 6, 0)),
    Value("PROT_GROWSDOWN|PROT_GROWSUP", PROT_GROWSDOWN | PROT_GROWSUP, (2, 6, 0)),
    Value("prot 0x40", 0x40, None),
    Value("prot 0x80|PROT_READ", 0x80 | PROT_READ, None),
    Value("prot 0x100", 0x100, None),
    Value("prot 0x4000000", 0x4000000, None),
)

# ------------------------------------------------------------------ VMA flags

# Bits of vm_flags the model tracks beside protection and accounting, named by their
# /proc/self/smaps VmFlags code: two VMAs merge only when these are equal too.
VMA_FLAG_CODES: dict[str, int] = {
    "sr": 1 << 0,  # VM_SEQ_READ (MADV_SEQUENTIAL)
    "rr": 1 << 1,  # VM_RAND_READ (MADV_RANDOM)
    "dc": 1 << 2,  # VM_DONTCOPY (MADV_DONTFORK)
    "mg": 1 << 3,  # VM_MERGEABLE (MADV_MERGEABLE)
    "hg": 1 << 4,  # VM_HUGEPAGE
    "nh": 1 << 5,  # VM_NOHUGEPAGE (MADV_NOHUGEPAGE, MAP_STACK since 6.7)
    "dd": 1 << 6,  # VM_DONTDUMP
    "wf": 1 << 7,  # VM_WIPEONFORK
    "dp": 1 << 8,  # VM_DROPPABLE (MAP_DROPPABLE)
    "lo": 1 << 9,  # VM_LOCKED (MAP_LOCKED)
    "gd": 1 << 10,  # VM_GROWSDOWN (MAP_GROWSDOWN)
    "sf": 1 << 11,  # VM_SYNC (MAP_SYNC: set even on private mappings, measured)
}
VF = VMA_FLAG_CODES
