"""Which operating system this process runs on: the one place the platform is chosen.

Code that differs by OS asks here (``OS``, the kernel's constants, the reader of the
kernel's view of memory, the stand-in's host memory) instead of reading ``sys.platform``
itself. The exceptions are guards that mypy must read as platform checks, around names
only Windows' ctypes has (``WinDLL``, ``get_last_error``): those stay ``sys.platform``
comparisons beside the code they guard, and agree with ``OS`` by construction.
"""

from __future__ import annotations

import platform
import sys
from typing import TYPE_CHECKING, Final, Literal

from arenacheck.model.posix_constants import DARWIN, LINUX, LINUX_ARM64, PosixFlavor

if TYPE_CHECKING:
    from arenacheck.impl.posix_backend import RegionReader

OsName = Literal["linux", "darwin", "windows", "other"]


def _os_name() -> OsName:
    if sys.platform == "win32":
        return "windows"
    if sys.platform == "darwin":
        return "darwin"
    if sys.platform.startswith("linux"):
        return "linux"
    return "other"


OS: Final[OsName] = _os_name()
IS_WINDOWS: Final = OS == "windows"
IS_LINUX: Final = OS == "linux"
IS_DARWIN: Final = OS == "darwin"
PLATFORM: Final = sys.platform


def posix_flavor() -> PosixFlavor:
    """The constants of the POSIX kernel this process runs on."""
    if IS_DARWIN:
        return DARWIN
    if platform.machine().lower() in ("aarch64", "arm64"):
        return LINUX_ARM64
    return LINUX


def region_reader() -> RegionReader:
    """The kernel's own account of this process's memory: ``mach_vm_region`` on macOS,
    else Linux's ``/proc/self/maps`` (its ioctl where the kernel has it)."""
    if IS_DARWIN:
        from arenacheck.impl.macos_regions import MachRegions

        return MachRegions()
    from arenacheck.impl.proc_maps import linux_regions

    return linux_regions()
