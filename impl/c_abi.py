"""The C ABI of ``native/c_arena.h`` as ctypes sees it: status codes, structures, functions.

:class:`CArenaLibrary` binds one loaded library and types each function; it passes values
across unchanged, and raises only for a library that cannot be loaded or does not speak this
ABI version (:class:`NativeAbiViolation`). What a status means is the adapter's to say.
"""

from __future__ import annotations

import ctypes
import enum
from collections.abc import Callable
from pathlib import Path
from typing import Any

from arenacheck.model.geometry import Geometry

ABI_VERSION = 1
# ``C_ARENA_POOL``, the one flag of c_arena_create.
POOL_FLAG = 1


class Status(enum.IntEnum):
    """``enum c_arena_status`` of c_arena.h."""

    OK = 0
    FULL = 1
    INVALID_LAYOUT = 2
    INVALID_ARGUMENT = 3
    RESERVE_FAILED = 4
    COMMIT_FAILED = 5
    RELEASE_FAILED = 6
    DOUBLE_FREE = 7
    USE_AFTER_FREE = 8
    OUT_OF_MEMORY = 9


def status_name(status: int) -> str:
    """The C name of ``status``, or a description that says it is outside the header."""
    try:
        return f"C_ARENA_{Status(status).name}"
    except ValueError:
        return f"status {status} (not in c_arena.h)"


class NativeAbiViolation(AssertionError):
    """The native library answered outside its documented C ABI: a bug in the library."""


class GeometryStruct(ctypes.Structure):
    """``struct c_arena_geometry``."""

    _fields_ = (
        ("page", ctypes.c_uint64),
        ("container_align", ctypes.c_uint64),
        ("block_size", ctypes.c_uint64),
        ("first_commit", ctypes.c_uint64),
        ("footer_size", ctypes.c_uint64),
    )


RESERVE_FN = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.c_void_p, ctypes.c_uint64, ctypes.POINTER(ctypes.c_uint64)
)
SPAN_FN = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_uint64, ctypes.c_uint64)


class VmTable(ctypes.Structure):
    """``struct c_arena_vm``."""

    _fields_ = (
        ("reserve", RESERVE_FN),
        ("commit", SPAN_FN),
        ("decommit", SPAN_FN),
        ("release", SPAN_FN),
    )


_U64_PTR = ctypes.POINTER(ctypes.c_uint64)
_INT_PTR = ctypes.POINTER(ctypes.c_int)
_HANDLE = ctypes.c_void_p
_U64_GETTERS = ("reservation", "container", "footer", "start", "cursor", "committed_bytes")


class CArenaLibrary:
    """One loaded library exporting the c_arena.h ABI, each function typed for ctypes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self._dll = ctypes.CDLL(str(path))
        except OSError as e:
            raise NativeAbiViolation(f"cannot load {path}: {e}") from e
        # The version first: a library of another version may lack or change the rest.
        version = self._bind("c_arena_abi_version", ctypes.c_uint32, ())
        self.abi_version = int(version())
        if self.abi_version != ABI_VERSION:
            raise NativeAbiViolation(
                f"{path} implements C ABI version {self.abi_version}; this adapter speaks "
                f"version {ABI_VERSION}"
            )
        self._create = self._bind(
            "c_arena_create",
            ctypes.c_int,
            (
                ctypes.POINTER(GeometryStruct),
                ctypes.c_uint64,
                ctypes.c_uint32,
                ctypes.POINTER(VmTable),
                ctypes.c_void_p,
                ctypes.POINTER(_HANDLE),
                _INT_PTR,
            ),
        )
        self._alloc = self._bind(
            "c_arena_alloc", ctypes.c_int, (_HANDLE, ctypes.c_uint64, ctypes.c_uint64, _U64_PTR)
        )
        self._reset = self._bind("c_arena_reset", ctypes.c_int, (_HANDLE,))
        self._free = self._bind("c_arena_free", ctypes.c_int, (_HANDLE,))
        self._destroy = self._bind("c_arena_destroy", ctypes.c_int, (_HANDLE,))
        self._alive = self._bind("c_arena_alive", ctypes.c_int, (_HANDLE, _INT_PTR))
        self._last_os_error = self._bind("c_arena_last_os_error", ctypes.c_int, (_HANDLE, _INT_PTR))
        self._getters = {
            name: self._bind(f"c_arena_{name}", ctypes.c_int, (_HANDLE, _U64_PTR))
            for name in _U64_GETTERS
        }

    def _bind(
        self, name: str, restype: type[ctypes.c_int | ctypes.c_uint32], argtypes: tuple[Any, ...]
    ) -> Callable[..., Any]:
        try:
            fn = getattr(self._dll, name)
        except AttributeError as e:
            raise NativeAbiViolation(f"{self.path} does not export {name}") from e
        fn.restype = restype
        fn.argtypes = argtypes
        return fn  # type: ignore[no-any-return]

    def create(
        self, geometry: Geometry, min_align: int, flags: int, vm: VmTable | None
    ) -> tuple[int, int, int]:
        """``c_arena_create``: (status, handle or 0, os_error)."""
        g = GeometryStruct(
            geometry.page,
            geometry.container_align,
            geometry.block_size,
            geometry.first_commit,
            geometry.footer_size,
        )
        handle = _HANDLE()
        os_error = ctypes.c_int()
        status = self._create(
            ctypes.byref(g),
            min_align,
            flags,
            None if vm is None else ctypes.byref(vm),
            None,
            ctypes.byref(handle),
            ctypes.byref(os_error),
        )
        return int(status), int(handle.value or 0), int(os_error.value)

    def alloc(self, handle: int, size: int, align: int) -> tuple[int, int]:
        """``c_arena_alloc``: (status, address or 0)."""
        addr = ctypes.c_uint64()
        status = self._alloc(handle, size, align, ctypes.byref(addr))
        return int(status), int(addr.value)

    def reset(self, handle: int) -> int:
        return int(self._reset(handle))

    def free(self, handle: int) -> int:
        return int(self._free(handle))

    def destroy(self, handle: int) -> int:
        return int(self._destroy(handle))

    def alive(self, handle: int) -> tuple[int, bool]:
        out = ctypes.c_int()
        status = self._alive(handle, ctypes.byref(out))
        return int(status), bool(out.value)

    def last_os_error(self, handle: int) -> tuple[int, int]:
        out = ctypes.c_int()
        status = self._last_os_error(handle, ctypes.byref(out))
        return int(status), int(out.value)

    def get(self, name: str, handle: int) -> tuple[int, int]:
        """One of the uint64 getters (``reservation`` ... ``committed_bytes``)."""
        out = ctypes.c_uint64()
        status = self._getters[name](handle, ctypes.byref(out))
        return int(status), int(out.value)
