"""The backends' names: pure data, so that naming them imports nothing that touches the OS."""

from __future__ import annotations

POSIX_NATIVE = "posix-native"
WIN32_EMULATED = "win32-emulated"
WIN32_NATIVE = "win32-native"
WIN32_WINE = "win32-wine"
BACKEND_NAMES = (POSIX_NATIVE, WIN32_EMULATED, WIN32_NATIVE, WIN32_WINE)
