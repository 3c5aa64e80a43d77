"""ctypes bindings of libc's virtual-memory calls (docs/VM_SEMANTICS.md B.5).

Every function gets argtypes and restype: without ``restype = c_void_p`` mmap's result
is truncated to a C int, and without argtypes large addresses do not convert.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from dataclasses import dataclass
from typing import Any

from arenacheck.impl.host import posix_flavor

MAP_FAILED = ctypes.c_void_p(-1).value or 0


@dataclass(frozen=True)
class CallResult:
    """A raw call's return value (``None`` from c_void_p normalised to 0) and errno."""

    value: int
    errno: int


class Libc:
    """A private CDLL instance, so our argtypes never leak into other ctypes users."""

    def __init__(self) -> None:
        self.flavor = posix_flavor()
        lib = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        lib.mmap.argtypes = [
            ctypes.c_void_p,
            ctypes.c_size_t,
            ctypes.c_int,
            ctypes.c_int,
            ctypes.c_int,
            ctypes.c_int64,
        ]
        lib.mmap.restype = ctypes.c_void_p
        lib.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
        lib.munmap.restype = ctypes.c_int
        lib.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
        lib.mprotect.restype = ctypes.c_int
        lib.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
        lib.madvise.restype = ctypes.c_int
        lib.sysconf.argtypes = [ctypes.c_int]
        lib.sysconf.restype = ctypes.c_long
        self._lib = lib
        self.page = int(lib.sysconf(self.flavor.sc_pagesize))

    def _call(self, fn: Any, *args: object) -> CallResult:
        # errno is not cleared by a successful call: clear it so a stale value never
        # passes for this call's.
        ctypes.set_errno(0)
        value = fn(*args)
        return CallResult(int(value or 0), ctypes.get_errno())

    def mmap(
        self, addr: int, length: int, prot: int, flags: int, fd: int, offset: int
    ) -> CallResult:
        return self._call(self._lib.mmap, addr or None, length, prot, flags, fd, offset)

    def munmap(self, addr: int, length: int) -> CallResult:
        return self._call(self._lib.munmap, addr or None, length)

    def mprotect(self, addr: int, length: int, prot: int) -> CallResult:
        return self._call(self._lib.mprotect, addr or None, length, prot)

    def madvise(self, addr: int, length: int, advice: int) -> CallResult:
        return self._call(self._lib.madvise, addr or None, length, advice)


_LIBC: Libc | None = None


def libc() -> Libc:
    """The process-wide bindings, loaded on first use."""
    global _LIBC
    if _LIBC is None:
        _LIBC = Libc()
    return _LIBC
