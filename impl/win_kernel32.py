"""kernel32's virtual-memory functions: structures, call shapes, and the native loader.

The structures are defined on every OS (with fixed-width types: ``wintypes.DWORD`` is
64 bits on Linux), so a stand-in kernel32 can fill them exactly as Windows does.
"""

from __future__ import annotations

import ctypes
import sys
from typing import Any, Protocol

from arenacheck.model.win_constants import MEM_EXTENDED_PARAMETER_ADDRESS_REQUIREMENTS

DWORD = ctypes.c_uint32
WORD = ctypes.c_uint16
BOOL = ctypes.c_int32


class MEMORY_BASIC_INFORMATION(ctypes.Structure):  # noqa: N801 - the Windows name
    _fields_ = [
        ("BaseAddress", ctypes.c_void_p),
        ("AllocationBase", ctypes.c_void_p),
        ("AllocationProtect", DWORD),
        ("PartitionId", WORD),
        ("RegionSize", ctypes.c_size_t),
        ("State", DWORD),
        ("Protect", DWORD),
        ("Type", DWORD),
    ]


class SYSTEM_INFO(ctypes.Structure):  # noqa: N801 - the Windows name
    _fields_ = [
        ("wProcessorArchitecture", WORD),
        ("wReserved", WORD),
        ("dwPageSize", DWORD),
        ("lpMinimumApplicationAddress", ctypes.c_void_p),
        ("lpMaximumApplicationAddress", ctypes.c_void_p),
        ("dwActiveProcessorMask", ctypes.c_size_t),
        ("dwNumberOfProcessors", DWORD),
        ("dwProcessorType", DWORD),
        ("dwAllocationGranularity", DWORD),
        ("wProcessorLevel", WORD),
        ("wProcessorRevision", WORD),
    ]


class MEM_ADDRESS_REQUIREMENTS(ctypes.Structure):  # noqa: N801 - the Windows name
    _fields_ = [
        ("LowestStartingAddress", ctypes.c_void_p),
        ("HighestEndingAddress", ctypes.c_void_p),
        ("Alignment", ctypes.c_size_t),
    ]


class MEM_EXTENDED_PARAMETER(ctypes.Structure):  # noqa: N801 - the Windows name
    # Type lives in the low 8 bits of the first 64-bit word; then a pointer-sized union.
    _fields_ = [("Type", ctypes.c_uint64), ("Pointer", ctypes.c_void_p)]


class AddressRequirementsParameter(MEM_EXTENDED_PARAMETER):
    """One MemExtendedParameterAddressRequirements parameter (0 in a field: not specified),
    keeping the MEM_ADDRESS_REQUIREMENTS it points at alive as long as itself."""

    requirements: MEM_ADDRESS_REQUIREMENTS

    def __init__(self, lowest: int = 0, highest: int = 0, alignment: int = 0) -> None:
        requirements = MEM_ADDRESS_REQUIREMENTS(lowest or None, highest or None, alignment)
        pointer = ctypes.addressof(requirements)
        super().__init__(MEM_EXTENDED_PARAMETER_ADDRESS_REQUIREMENTS, pointer)
        # The pointer alone would let the requirements be freed before the call.
        self.requirements = requirements


assert ctypes.sizeof(MEMORY_BASIC_INFORMATION) == 48
assert ctypes.sizeof(MEM_ADDRESS_REQUIREMENTS) == 24
assert ctypes.sizeof(MEM_EXTENDED_PARAMETER) == 16
assert ctypes.sizeof(SYSTEM_INFO) == 48


class Kernel32(Protocol):
    """The call shapes the Windows code uses; a ctypes WinDLL or a stand-in provides them.

    Pointers come back as ``int`` or ``None`` (ctypes' c_void_p), BOOL and SIZE_T as
    ``int``; the last error is read with ``get_last_error`` right after the call.
    """

    def VirtualAlloc(  # noqa: N802
        self, address: int | None, size: int, alloc_type: int, protect: int
    ) -> Any: ...

    def VirtualFree(self, address: int | None, size: int, free_type: int) -> Any: ...  # noqa: N802

    def VirtualQuery(self, address: int | None, buffer: Any, length: int) -> Any: ...  # noqa: N802

    def VirtualProtect(  # noqa: N802
        self, address: int | None, size: int, new_protect: int, old_protect: Any
    ) -> Any: ...

    def GetSystemInfo(self, buffer: Any) -> Any: ...  # noqa: N802

    def get_last_error(self) -> int: ...

    def set_last_error(self, value: int) -> int: ...

    @property
    def wine_version(self) -> str | None:
        """Wine's version when this kernel32 is Wine's, else None (Windows, or a model)."""
        ...


def ntdll_wine_version() -> str | None:
    """The version ntdll's ``wine_get_version`` reports, or None where ntdll lacks it.

    Wine's ntdll exports it and Windows' never has: the test Wine's own documentation gives
    programs that must tell the two apart.
    """
    if sys.platform != "win32":
        return None
    ntdll: Any = ctypes.WinDLL("ntdll")
    get_version = getattr(ntdll, "wine_get_version", None)
    if get_version is None:
        return None
    get_version.argtypes = []
    get_version.restype = ctypes.c_char_p
    raw: bytes | None = get_version()
    return raw.decode("ascii", "replace") if raw else "unknown"


class NativeKernel32:
    """A private ``WinDLL("kernel32", use_last_error=True)`` with full prototypes.

    Never ``ctypes.windll.kernel32``: that object is shared process-wide, and setting
    argtypes on it would change every other user's calls.
    """

    VirtualAlloc: Any
    VirtualFree: Any
    VirtualQuery: Any
    VirtualProtect: Any
    GetSystemInfo: Any
    get_last_error: Any
    set_last_error: Any
    wine_version: str | None

    def __init__(self) -> None:
        if sys.platform != "win32":
            raise OSError("kernel32 exists only on Windows")
        dll: Any = ctypes.WinDLL("kernel32", use_last_error=True)
        dll.VirtualAlloc.argtypes = [ctypes.c_void_p, ctypes.c_size_t, DWORD, DWORD]
        dll.VirtualAlloc.restype = ctypes.c_void_p
        dll.VirtualFree.argtypes = [ctypes.c_void_p, ctypes.c_size_t, DWORD]
        dll.VirtualFree.restype = BOOL
        dll.VirtualQuery.argtypes = [
            ctypes.c_void_p,
            ctypes.POINTER(MEMORY_BASIC_INFORMATION),
            ctypes.c_size_t,
        ]
        dll.VirtualQuery.restype = ctypes.c_size_t
        dll.VirtualProtect.argtypes = [
            ctypes.c_void_p,
            ctypes.c_size_t,
            DWORD,
            ctypes.POINTER(DWORD),
        ]
        dll.VirtualProtect.restype = BOOL
        dll.GetSystemInfo.argtypes = [ctypes.POINTER(SYSTEM_INFO)]
        dll.GetSystemInfo.restype = None
        self.VirtualAlloc = dll.VirtualAlloc
        self.VirtualFree = dll.VirtualFree
        self.VirtualQuery = dll.VirtualQuery
        self.VirtualProtect = dll.VirtualProtect
        self.GetSystemInfo = dll.GetSystemInfo
        # VirtualAlloc2 is exported by KernelBase, not kernel32, from Windows 10 1803 (A.6).
        base: Any = ctypes.WinDLL("kernelbase", use_last_error=True)
        alloc2 = getattr(base, "VirtualAlloc2", None)
        if alloc2 is not None:
            alloc2.argtypes = [
                ctypes.c_void_p,
                ctypes.c_void_p,
                ctypes.c_size_t,
                DWORD,
                DWORD,
                ctypes.POINTER(MEM_EXTENDED_PARAMETER),
                DWORD,
            ]
            alloc2.restype = ctypes.c_void_p
            self.VirtualAlloc2 = alloc2
        self.wine_version = ntdll_wine_version()
        ctypes_module: Any = ctypes
        self.get_last_error = ctypes_module.get_last_error
        self.set_last_error = ctypes_module.set_last_error
