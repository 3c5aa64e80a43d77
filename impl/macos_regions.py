"""The XNU kernel's view of a range, from ``mach_vm_region`` (docs/VM_SEMANTICS.md B.4).

macOS has no /proc: each call returns the first region at or above an address, with
its current protection.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from collections.abc import Iterator

from arenacheck.impl.backend import spans_of
from arenacheck.model.spans import OsSpan, prot_letters

VM_REGION_BASIC_INFO_64 = 9
KERN_SUCCESS = 0


class VmRegionBasicInfo64(ctypes.Structure):
    # <mach/vm_region.h> declares it under #pragma pack(4): 36 bytes, 9 natural_t.
    _pack_ = 4
    _fields_ = [
        ("protection", ctypes.c_int),
        ("max_protection", ctypes.c_int),
        ("inheritance", ctypes.c_uint),
        ("shared", ctypes.c_int),
        ("reserved", ctypes.c_int),
        ("offset", ctypes.c_uint64),
        ("behavior", ctypes.c_int),
        ("user_wired_count", ctypes.c_ushort),
    ]


VM_REGION_BASIC_INFO_COUNT_64 = ctypes.sizeof(VmRegionBasicInfo64) // ctypes.sizeof(ctypes.c_int)


class MachRegions:
    def __init__(self) -> None:
        lib = ctypes.CDLL(ctypes.util.find_library("System") or None)
        self._task = ctypes.c_uint.in_dll(lib, "mach_task_self_").value
        fn = lib.mach_vm_region
        fn.argtypes = [
            ctypes.c_uint,
            ctypes.POINTER(ctypes.c_uint64),
            ctypes.POINTER(ctypes.c_uint64),
            ctypes.c_int,
            ctypes.POINTER(VmRegionBasicInfo64),
            ctypes.POINTER(ctypes.c_uint),
            ctypes.POINTER(ctypes.c_uint),
        ]
        fn.restype = ctypes.c_int
        self._region = fn

    def mappings(self, lo: int) -> Iterator[tuple[int, int, str]]:
        """(start, end, perms) of each region from the one at or above ``lo`` up."""
        addr = lo
        while True:
            address = ctypes.c_uint64(addr)
            size = ctypes.c_uint64(0)
            info = VmRegionBasicInfo64()
            count = ctypes.c_uint(VM_REGION_BASIC_INFO_COUNT_64)
            port = ctypes.c_uint(0)
            kr = self._region(
                self._task,
                ctypes.byref(address),
                ctypes.byref(size),
                VM_REGION_BASIC_INFO_64,
                ctypes.byref(info),
                ctypes.byref(count),
                ctypes.byref(port),
            )
            if kr != KERN_SUCCESS:
                return
            yield address.value, address.value + size.value, prot_letters(info.protection)
            addr = address.value + size.value

    def spans_in(self, lo: int, hi: int) -> list[OsSpan]:
        return spans_of(self.mappings(lo), lo, hi)
