"""Host memory for the kernel32 stand-in on a Windows host: the real VirtualAlloc.

Same shape as ``host_posix.PosixHostMemory``; the stand-in's model still decides every
result, and this layer only makes uncommitted pages really fault.
"""

from __future__ import annotations

from arenacheck.impl.win_backend import WindowsBackend
from arenacheck.impl.win_kernel32 import NativeKernel32
from arenacheck.model.posix_constants import PROT_READ, PROT_WRITE
from arenacheck.model.spans import OsSpan
from arenacheck.model.win_constants import (
    MEM_COMMIT,
    MEM_DECOMMIT,
    MEM_RELEASE,
    MEM_RESERVE,
    PAGE_NOACCESS,
    PAGE_READONLY,
    PAGE_READWRITE,
)


class WindowsHostMemory:
    def __init__(self) -> None:
        self._k32 = NativeKernel32()
        self._view = WindowsBackend(self._k32)
        self.page = self._view.page

    def reserve(self, size: int, align: int, skew: int = 0) -> int | None:
        base = self._k32.VirtualAlloc(None, size + align + skew, MEM_RESERVE, PAGE_NOACCESS)
        if not base:
            return None
        self._k32.VirtualFree(base, 0, MEM_RELEASE)
        aligned = ((int(base) + align - 1) & ~(align - 1)) + skew
        # Release, then re-reserve inside the range just seen free: racy, but only other
        # threads of this process could take it, and a loss is reported as "no room".
        return aligned if self.reserve_at(aligned, size) else None

    def reserve_at(self, addr: int, size: int) -> bool:
        return bool(self._k32.VirtualAlloc(addr, size, MEM_RESERVE, PAGE_NOACCESS))

    def protect(self, addr: int, size: int, prot: int) -> None:
        if prot & PROT_WRITE:
            win = PAGE_READWRITE
        elif prot & PROT_READ:
            win = PAGE_READONLY
        else:
            # Committed but inaccessible keeps its contents, as on the emulated side.
            win = PAGE_NOACCESS
        if not self._k32.VirtualAlloc(addr, size, MEM_COMMIT, win):
            raise OSError(self._k32.get_last_error(), f"host commit at {addr:#x} failed")

    def discard(self, addr: int, size: int) -> None:
        if not self._k32.VirtualFree(addr, size, MEM_DECOMMIT):
            raise OSError(self._k32.get_last_error(), f"host decommit at {addr:#x} failed")

    def release(self, addr: int, size: int) -> None:
        if not self._k32.VirtualFree(addr, 0, MEM_RELEASE):
            raise OSError(self._k32.get_last_error(), f"host release at {addr:#x} failed")

    def query(self, lo: int, hi: int) -> list[OsSpan]:
        return self._view.query(lo, hi)
