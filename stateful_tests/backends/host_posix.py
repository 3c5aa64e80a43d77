"""Host memory for the kernel32 stand-in on a POSIX host: real mappings behind the model.

A Windows reservation is a PROT_NONE NORESERVE mapping at a 64 KiB-aligned base, a
commit an mprotect to read-write, a decommit a fresh PROT_NONE mapping over the range
(so recommitted pages read as zeros, as on Windows), a release an munmap.
"""

from __future__ import annotations

from arenacheck.impl.posix_backend import PosixBackend
from arenacheck.impl.posix_libc import MAP_FAILED, libc
from arenacheck.model.posix_constants import MAP_FIXED, MAP_PRIVATE, PROT_NONE
from arenacheck.model.spans import OsSpan


class PosixHostMemory:
    def __init__(self) -> None:
        self.libc = libc()
        self.page = self.libc.page
        flavor = self.libc.flavor
        self._flags = MAP_PRIVATE | flavor.map_anonymous | flavor.map_noreserve
        self._noreplace = flavor.map_fixed_noreplace
        self._view = PosixBackend(self.libc)

    def reserve(self, size: int, align: int, skew: int = 0) -> int | None:
        """``size`` bytes at an ``align``-aligned base plus ``skew``; None when out of room."""
        span = size + align + skew
        r = self.libc.mmap(0, span, PROT_NONE, self._flags, -1, 0)
        if r.value == MAP_FAILED:
            return None
        base = ((r.value + align - 1) & ~(align - 1)) + skew
        if base > r.value:
            self.libc.munmap(r.value, base - r.value)
        tail = r.value + span - (base + size)
        if tail:
            self.libc.munmap(base + size, tail)
        return base

    def reserve_at(self, addr: int, size: int) -> bool:
        """Map exactly ``[addr, addr + size)``, never over anything; False if it is taken."""
        return self._view.reserve_at(addr, size)

    def protect(self, addr: int, size: int, prot: int) -> None:
        r = self.libc.mprotect(addr, size, prot)
        if r.value != 0:
            raise OSError(r.errno, f"host mprotect({addr:#x}, {size:#x}, {prot}) failed")

    def discard(self, addr: int, size: int) -> None:
        r = self.libc.mmap(addr, size, PROT_NONE, self._flags | MAP_FIXED, -1, 0)
        if r.value == MAP_FAILED:
            raise OSError(r.errno, f"host discard of {size:#x} bytes at {addr:#x} failed")

    def release(self, addr: int, size: int) -> None:
        r = self.libc.munmap(addr, size)
        if r.value != 0:
            raise OSError(r.errno, f"host munmap({addr:#x}, {size:#x}) failed")

    def query(self, lo: int, hi: int) -> list[OsSpan]:
        return self._view.query(lo, hi)
