"""The native POSIX backend: mmap reserves, mprotect commits, munmap releases.

Reservations are PROT_NONE with MAP_NORESERVE, so they cost address space only; a
commit is an mprotect to read-write, which the kernel does not charge for a NORESERVE
mapping outside overcommit mode 2 (docs/VM_SEMANTICS.md B.2).
"""

from __future__ import annotations

from typing import Protocol

from arenacheck.impl.backend import Backend
from arenacheck.impl.errors import OSCallFailed
from arenacheck.impl.host import region_reader
from arenacheck.impl.posix_libc import MAP_FAILED, Libc, libc
from arenacheck.model.posix_constants import (
    MAP_FIXED,
    MAP_PRIVATE,
    PROT_NONE,
    PROT_READ,
    PROT_WRITE,
)
from arenacheck.model.spans import OsSpan


class RegionReader(Protocol):
    """The kernel's own account of a range of this process, as spans."""

    def spans_in(self, lo: int, hi: int) -> list[OsSpan]: ...


class PosixBackend(Backend):
    name = "posix-native"

    def __init__(self, lib: Libc | None = None) -> None:
        self.libc = lib or libc()
        self.page = self.libc.page
        self.granularity = self.page
        flavor = self.libc.flavor
        self._reserve_flags = MAP_PRIVATE | flavor.map_anonymous | flavor.map_noreserve
        self._regions: RegionReader = region_reader()

    def reserve(self, size: int) -> int:
        r = self.libc.mmap(0, size, PROT_NONE, self._reserve_flags, -1, 0)
        if r.value == MAP_FAILED:
            raise OSCallFailed("mmap", r.errno, f"reserve {size:#x} bytes")
        return r.value

    def reserve_at(self, addr: int, size: int) -> bool:
        noreplace = self.libc.flavor.map_fixed_noreplace
        if noreplace is not None:
            r = self.libc.mmap(addr, size, PROT_NONE, self._reserve_flags | noreplace, -1, 0)
            return r.value != MAP_FAILED
        # No MAP_FIXED_NOREPLACE (macOS): ask with a hint and give back anything misplaced.
        r = self.libc.mmap(addr, size, PROT_NONE, self._reserve_flags, -1, 0)
        if r.value == MAP_FAILED:
            return False
        if r.value != addr:
            self.libc.munmap(r.value, size)
            return False
        return True

    def reserve_committed(self, size: int) -> int:
        # A private writable mapping without MAP_NORESERVE: charged to Committed_AS and
        # counted by RLIMIT_DATA, as a system allocator's block is (docs/VM_SEMANTICS.md B.2).
        flags = self._reserve_flags & ~self.libc.flavor.map_noreserve
        r = self.libc.mmap(0, size, PROT_READ | PROT_WRITE, flags, -1, 0)
        if r.value == MAP_FAILED:
            raise OSCallFailed("mmap", r.errno, f"obtain {size:#x} committed bytes")
        return r.value

    def commit(self, addr: int, size: int) -> None:
        r = self.libc.mprotect(addr, size, PROT_READ | PROT_WRITE)
        if r.value != 0:
            raise OSCallFailed("mprotect", r.errno, f"commit {size:#x} bytes at {addr:#x}")

    def decommit(self, addr: int, size: int) -> None:
        # A fresh PROT_NONE NORESERVE mapping over the range drops pages and charge alike;
        # madvise + mprotect would keep the charge of pages once written.
        r = self.libc.mmap(addr, size, PROT_NONE, self._reserve_flags | MAP_FIXED, -1, 0)
        if r.value == MAP_FAILED:
            raise OSCallFailed("mmap", r.errno, f"decommit {size:#x} bytes at {addr:#x}")

    def release(self, addr: int, size: int) -> None:
        r = self.libc.munmap(addr, size)
        if r.value != 0:
            raise OSCallFailed("munmap", r.errno, f"release {size:#x} bytes at {addr:#x}")

    def query(self, lo: int, hi: int) -> list[OsSpan]:
        return self._regions.spans_in(lo, hi)
