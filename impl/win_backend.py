"""The Windows backend: VirtualAlloc reserves and commits, VirtualFree releases.

kernel32 arrives through one seam, ``load_kernel32``: on Windows it loads the real DLL;
tests point it at a stand-in with the same call shapes, so this module runs unchanged
against real Windows, a model-backed emulation, or Wine.
"""

from __future__ import annotations

import ctypes
from typing import Any

from arenacheck.impl.backend import Backend
from arenacheck.impl.errors import OSCallFailed
from arenacheck.impl.win_kernel32 import (
    MEMORY_BASIC_INFORMATION,
    SYSTEM_INFO,
    AddressRequirementsParameter,
    Kernel32,
    NativeKernel32,
)
from arenacheck.impl.wine_alloc2_probe import aligned_reserve_survives
from arenacheck.impl.wine_held import held_by_wine_here
from arenacheck.model.spans import OsSpan, SpanState, merge_spans
from arenacheck.model.win_constants import (
    MEM_COMMIT,
    MEM_DECOMMIT,
    MEM_FREE,
    MEM_RELEASE,
    MEM_RESERVE,
    PAGE_NOACCESS,
    PAGE_READWRITE,
)

# Set before each call: a successful call leaves the last error alone, so a stale code
# must never pass for this call's. It must fit a C int: ctypes.set_last_error takes one.
LAST_ERROR_SENTINEL = 0x0BADF00D

_PROT_LETTERS = {
    0x01: "---",
    0x02: "r--",
    0x04: "rw-",
    0x08: "rw-",
    0x10: "--x",
    0x20: "r-x",
    0x40: "rwx",
    0x80: "rwx",
}


def load_kernel32() -> Kernel32:
    """The seam: the kernel32 every WindowsBackend uses unless given one."""
    return NativeKernel32()


def protect_letters(protect: int) -> str:
    return _PROT_LETTERS.get(protect & 0xFF, "???")


class WindowsBackend(Backend):
    name = "win32-native"
    partial_release = False

    def __init__(self, kernel32: Kernel32 | None = None, name: str | None = None) -> None:
        self.k32 = kernel32 if kernel32 is not None else load_kernel32()
        # Wine is a property of the kernel32 answering, whatever the backend is called.
        self.wine_version: str | None = self.k32.wine_version
        # A stand-in decides every call by its model, and Wine's server is a process of
        # its own: only the real kernel32 acts where this interpreter allocates.
        self.acts_in_this_process = isinstance(self.k32, NativeKernel32)
        if name is not None:
            self.name = name
        info = SYSTEM_INFO()
        self.k32.GetSystemInfo(ctypes.byref(info))
        self.page = int(info.dwPageSize)
        self.granularity = int(info.dwAllocationGranularity)
        self.min_address = int(info.lpMinimumApplicationAddress or 0)
        self.max_address = int(info.lpMaximumApplicationAddress or 0)

    @property
    def kernel32(self) -> Kernel32:
        return self.k32

    def call(self, fn: Any, *args: object) -> tuple[int, int]:
        """Call ``fn``; its return value (NULL as 0) and the last error it left."""
        self.k32.set_last_error(LAST_ERROR_SENTINEL)
        value = fn(*args)
        return int(value or 0), int(self.k32.get_last_error())

    def virtual_query(self, addr: int) -> tuple[int, int, MEMORY_BASIC_INFORMATION]:
        mbi = MEMORY_BASIC_INFORMATION()
        ret, err = self.call(
            self.k32.VirtualQuery, addr or None, ctypes.byref(mbi), ctypes.sizeof(mbi)
        )
        return ret, err, mbi

    def hidden_mappings(self, lo: int, hi: int) -> list[str]:
        """What is mapped in ``[lo, hi)`` though VirtualQuery reports it free.

        Windows' VirtualQuery sees every allocation, and a stand-in's model hides nothing:
        only Wine keeps memory of its own outside its views (``arenacheck.impl.wine_held``).
        """
        if self.wine_version is None or not self.acts_in_this_process:
            return []
        return held_by_wine_here(lo, hi)

    def reserve(self, size: int) -> int:
        base, err = self.call(self.k32.VirtualAlloc, None, size, MEM_RESERVE, PAGE_NOACCESS)
        if not base:
            raise OSCallFailed("VirtualAlloc", err, f"reserve {size:#x} bytes")
        return base

    def reserve_at(self, addr: int, size: int) -> bool:
        base, _ = self.call(self.k32.VirtualAlloc, addr, size, MEM_RESERVE, PAGE_NOACCESS)
        return base == addr

    def reserve_aligned(self, size: int, align: int) -> int | None:
        """VirtualAlloc2 with MEM_ADDRESS_REQUIREMENTS, where KernelBase exports it (A.6).

        Under Wine only once a child process has survived the same call: Wine 8.0 aborts
        the process for some shapes (``arenacheck.impl.wine_alloc2_probe``).
        """
        if getattr(self.k32, "VirtualAlloc2", None) is None:
            return None
        if self.wine_version is not None and not aligned_reserve_survives(size, align):
            return None
        return self.call_aligned_reserve(size, align)

    def call_aligned_reserve(self, size: int, align: int) -> int | None:
        """The VirtualAlloc2 call itself: ``size`` reserved on an ``align`` boundary."""
        alloc2 = getattr(self.k32, "VirtualAlloc2", None)
        if alloc2 is None:
            return None
        param = AddressRequirementsParameter(alignment=align)
        base, _ = self.call(
            alloc2, None, None, size, MEM_RESERVE, PAGE_NOACCESS, ctypes.byref(param), 1
        )
        return base or None

    def reserve_committed(self, size: int) -> int:
        kind = MEM_RESERVE | MEM_COMMIT
        base, err = self.call(self.k32.VirtualAlloc, None, size, kind, PAGE_READWRITE)
        if not base:
            raise OSCallFailed("VirtualAlloc", err, f"obtain {size:#x} committed bytes")
        return base

    def commit(self, addr: int, size: int) -> None:
        base, err = self.call(self.k32.VirtualAlloc, addr, size, MEM_COMMIT, PAGE_READWRITE)
        if not base:
            raise OSCallFailed("VirtualAlloc", err, f"commit {size:#x} bytes at {addr:#x}")

    def decommit(self, addr: int, size: int) -> None:
        ok, err = self.call(self.k32.VirtualFree, addr, size, MEM_DECOMMIT)
        if not ok:
            raise OSCallFailed("VirtualFree", err, f"decommit {size:#x} bytes at {addr:#x}")

    def release(self, addr: int, size: int) -> None:
        # MEM_RELEASE takes size 0 and the allocation base: any other size is error 87.
        ok, err = self.call(self.k32.VirtualFree, addr, 0, MEM_RELEASE)
        if not ok:
            raise OSCallFailed("VirtualFree", err, f"release the reservation at {addr:#x}")

    def query(self, lo: int, hi: int) -> list[OsSpan]:
        out: list[OsSpan] = []
        addr = lo
        while addr < hi:
            ret, err, mbi = self.virtual_query(addr)
            if ret != ctypes.sizeof(mbi):
                raise OSCallFailed("VirtualQuery", err, f"query {addr:#x}")
            base = int(mbi.BaseAddress or 0)
            end = min(base + int(mbi.RegionSize), hi)
            if mbi.State == MEM_FREE:
                out.append(OsSpan(addr, end, SpanState.FREE))
            elif mbi.State == MEM_RESERVE:
                out.append(OsSpan(addr, end, SpanState.RESERVED))
            else:
                state = SpanState.COMMITTED
                out.append(OsSpan(addr, end, state, protect_letters(int(mbi.Protect))))
            addr = end
        return merge_spans(out)
