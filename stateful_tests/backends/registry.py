"""The backends the harness knows, whether this machine has each, and how to open one.

``posix-native``: mmap/mprotect/munmap on this Linux or macOS kernel. ``win32-native``:
the real kernel32 (Windows only). ``win32-emulated``: the unchanged Windows backend
with its kernel32 seam pointed at the model-backed stand-in; available everywhere.
``win32-wine``: the unchanged Windows backend over Wine's kernel32, in a server process
under Debian's wine64 (Linux with wine64 and the mingw-w64 compiler).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from unittest import mock

from arenacheck.backends.names import (
    BACKEND_NAMES,
    POSIX_NATIVE,
    WIN32_EMULATED,
    WIN32_NATIVE,
    WIN32_WINE,
)
from arenacheck.backends.standin import EmulatedKernel32
from arenacheck.backends.wine_kernel32 import WineBackend
from arenacheck.backends.wine_kernel32 import unavailable_reason as wine_unavailable_reason
from arenacheck.impl import host
from arenacheck.impl.backend import Backend
from arenacheck.impl.posix_backend import PosixBackend
from arenacheck.impl.win_backend import WindowsBackend

SEAM = "arenacheck.impl.win_backend.load_kernel32"


def unavailable_reason(name: str) -> str | None:
    """Why ``name`` cannot run on this machine, or None when it can."""
    if name == POSIX_NATIVE:
        if host.IS_WINDOWS:
            return "posix-native needs a POSIX kernel (Linux or macOS); this is Windows"
        if not host.IS_DARWIN and not os.path.exists("/proc/self/maps"):
            return "posix-native reads the kernel's view from /proc/self/maps, which is missing"
        return None
    if name == WIN32_EMULATED:
        return None
    if name == WIN32_NATIVE:
        if not host.IS_WINDOWS:
            return f"win32-native needs the real kernel32.dll; this is {host.PLATFORM}"
        return None
    if name == WIN32_WINE:
        return wine_unavailable_reason()
    raise ValueError(f"unknown backend {name!r}; known: {', '.join(BACKEND_NAMES)}")


def host_backend() -> str:
    """The backend that is this host's own OS: the one whose view shows what native code's
    own VM calls did."""
    return WIN32_NATIVE if host.IS_WINDOWS else POSIX_NATIVE


def family(name: str) -> str:
    """``posix`` or ``windows``: which VM model predicts the backend."""
    return "posix" if name == POSIX_NATIVE else "windows"


@contextlib.contextmanager
def standin_installed() -> Iterator[None]:
    """Point the kernel32 seam at a fresh stand-in per load, outside pytest."""
    with mock.patch(SEAM, side_effect=EmulatedKernel32):
        yield


def open_backend(name: str) -> Backend:
    """A new backend; ``win32-emulated`` requires the seam to be pointed at the stand-in."""
    reason = unavailable_reason(name)
    if reason is not None:
        raise RuntimeError(reason)
    if name == POSIX_NATIVE:
        return PosixBackend()
    if name == WIN32_NATIVE:
        return WindowsBackend()
    if name == WIN32_WINE:
        return WineBackend()
    backend = WindowsBackend(name=WIN32_EMULATED)
    if not isinstance(backend.k32, EmulatedKernel32):
        raise RuntimeError(
            f"win32-emulated needs {SEAM} pointed at the stand-in (the pytest fixture "
            "'arenacheck_emulated_kernel32' or "
            "arenacheck.backends.registry.standin_installed() does it); "
            f"got {type(backend.k32).__name__}"
        )
    return backend


__all__ = [
    "BACKEND_NAMES",
    "POSIX_NATIVE",
    "WIN32_EMULATED",
    "WIN32_NATIVE",
    "WIN32_WINE",
    "family",
    "open_backend",
    "standin_installed",
    "unavailable_reason",
]
