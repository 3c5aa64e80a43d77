"""The native fixed-size arena (``native/c_arena.c``), built at run time and driven by ctypes.

``native/c_arena.h`` documents the C ABI. This module compiles the bundled source with the
system C compiler into a private build directory outside the source tree (or loads any
library that exports the same ABI, named by ``$ARENACHECK_C_ARENA_LIB``), and
:class:`CArena` gives it the public interface of :class:`impl.arena.Arena`, with the same
typed errors, so every machine runs against it (``--arena-impl impl.c_arena:CArena``).

The arena's OS calls go through a table of callbacks into a :class:`~impl.backend.Backend`
(so a recording backend sees, logs and fences each of them, exactly as for the Python
arena), or, with ``direct=True``, through the library's own mmap/mprotect/munmap.

Invariant: a :class:`CArena` answers every question about its state from the native
library's getters, never from a copy of its own; only the geometry, MIN_ALIGN and the pool
flag it was created with are kept in Python.
"""

from __future__ import annotations

import ctypes
import enum
import functools
import hashlib
import os
import platform
import shlex
import shutil
import struct
import subprocess
import sys
import tempfile
import weakref
from collections.abc import Callable
from itertools import pairwise
from pathlib import Path
from typing import Any, NoReturn

from arenacheck.impl.arena import FOOTER_MAGIC
from arenacheck.impl.backend import Backend
from arenacheck.impl.errors import (
    ArenaFull,
    DoubleFree,
    InvalidArgumentType,
    InvalidLayout,
    OSCallFailed,
    OutOfBounds,
    UseAfterFree,
)
from arenacheck.impl.native import NATIVE_DIR
from arenacheck.model.geometry import Geometry, GeometryError

SOURCE = NATIVE_DIR / "c_arena.c"
HEADER = NATIVE_DIR / "c_arena.h"
CFLAGS = ("-std=c11", "-O2", "-shared", "-fPIC", "-Wall", "-Wextra", "-Werror")
BUILD_DIR_ENV = "ARENACHECK_BUILD_DIR"
LIBRARY_ENV = "ARENACHECK_C_ARENA_LIB"
ABI_VERSION = 1
POOL_FLAG = 1
_U64 = (1 << 64) - 1
_FOOTER = struct.Struct("<QQ")
# What a callback returns when the backend raised something that carries no OS code.
CALLBACK_RAISED = -1


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
    try:
        return f"C_ARENA_{Status(status).name}"
    except ValueError:
        return f"status {status} (not in c_arena.h)"


class CompileError(RuntimeError):
    """The native arena could not be built; the message carries the compiler's output."""


class NativeAbiViolation(AssertionError):
    """The native library answered outside its documented C ABI: a bug in the library."""


# ------------------------------------------------------------------------- building


def compiler_command() -> list[str] | None:
    """``$CC`` split like a shell would (it may carry flags), else cc, gcc or clang."""
    cc = os.environ.get("CC", "").strip()
    if cc:
        try:
            argv = shlex.split(cc)
        except ValueError:
            return None
        exe = shutil.which(argv[0]) if argv else None
        return [exe, *argv[1:]] if exe else None
    for name in ("cc", "gcc", "clang"):
        exe = shutil.which(name)
        if exe:
            return [exe]
    return None


def compiler_unavailable_reason() -> str | None:
    """Why the bundled C arena cannot be built here, or None when a compiler is at hand.

    A compiler that is present but fails on the source is not a reason to skip: that is a
    bug, and :func:`build_library` raises :class:`CompileError` with the compiler's output.
    """
    missing = [p for p in (SOURCE, HEADER) if not p.is_file()]
    if missing:
        return (
            f"the C arena's source is missing ({', '.join(map(str, missing))}): arenacheck "
            "was installed without its native/ directory; install it from a checkout"
        )
    if sys.platform == "win32":
        return "the C arena is built with a POSIX compiler driver and uses mmap; this is Windows"
    if compiler_command() is None:
        cc = os.environ.get("CC", "").strip()
        if cc:
            return f"CC={cc!r} does not name an executable on PATH"
        return "no C compiler: CC is unset and none of cc, gcc, clang is on PATH"
    return None


def _library_suffix() -> str:
    return ".dylib" if sys.platform == "darwin" else ".so"


def build_dir() -> Path:
    """Where built libraries go: ``$ARENACHECK_BUILD_DIR``, else a per-user temp directory.

    The directory must belong to this user and be writable by nobody else: a library loaded
    from it runs in this process, so anyone able to replace it could run code here.
    """
    if sys.platform == "win32":
        raise CompileError("the C arena is not built on Windows")
    chosen = os.environ.get(BUILD_DIR_ENV, "").strip()
    if chosen:
        directory = Path(chosen)
    else:
        directory = Path(tempfile.gettempdir()) / f"arenacheck-native-{os.getuid()}"
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = directory.stat()
    if info.st_uid != os.getuid() or info.st_mode & 0o022:
        raise CompileError(
            f"the build directory {directory} is not private to this user (owner uid "
            f"{info.st_uid}, mode {info.st_mode & 0o777:o}); set {BUILD_DIR_ENV} to a "
            "directory only you can write"
        )
    return directory


def _compiler_identity(cc: list[str]) -> bytes:
    """What ``--version`` says, so that a compiler upgraded in place rebuilds."""
    try:
        done = subprocess.run(
            [*cc, "--version"], capture_output=True, timeout=60, check=False, stdin=None
        )
    except (OSError, subprocess.SubprocessError):
        return b""
    return done.stdout


def _build_key(cc: list[str]) -> str:
    digest = hashlib.sha256()
    parts = (
        SOURCE.read_bytes(),
        HEADER.read_bytes(),
        "\0".join(cc).encode(),
        "\0".join(CFLAGS).encode(),
        _compiler_identity(cc),
        f"{sys.platform} {platform.machine()}".encode(),
    )
    for part in parts:
        # Length-prefixed, so that no two different inputs hash the same concatenation.
        digest.update(len(part).to_bytes(8, "little"))
        digest.update(part)
    return digest.hexdigest()[:24]


def build_library() -> Path:
    """Compile ``native/c_arena.c`` once per source and compiler; return the library's path.

    Parallel builders (pytest-xdist workers) never see a half-written library: each
    compiles to its own temporary file and renames it into place, which is atomic; two
    racing builders produce the same bytes, and a library already loaded keeps its inode.
    """
    reason = compiler_unavailable_reason()
    if reason is not None:
        raise CompileError(reason)
    cc = compiler_command()
    assert cc is not None
    directory = build_dir()
    suffix = _library_suffix()
    target = directory / f"c_arena-{_build_key(cc)}{suffix}"
    if target.is_file():
        return target
    fd, tmp_name = tempfile.mkstemp(prefix=".c_arena-", suffix=suffix, dir=directory)
    os.close(fd)
    tmp = Path(tmp_name)
    command = [*cc, *CFLAGS, "-o", str(tmp), str(SOURCE)]
    try:
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
        except (OSError, subprocess.SubprocessError) as e:
            raise CompileError(f"{shlex.join(command)} could not run: {e}") from e
        if done.returncode != 0:
            raise CompileError(
                f"{shlex.join(command)} failed with status {done.returncode}:\n"
                f"{done.stderr}{done.stdout}"
            )
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return target


# ---------------------------------------------------------------------- the C ABI


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


@functools.cache
def _load(path: str) -> CArenaLibrary:
    return CArenaLibrary(Path(path))


def load_library(path: str | os.PathLike[str] | None = None) -> CArenaLibrary:
    """The library at ``path``, else at ``$ARENACHECK_C_ARENA_LIB``, else the bundled source
    built on first use. Any library exporting the c_arena.h ABI will do. Loaded once per
    process and path."""
    if path is None:
        path = os.environ.get(LIBRARY_ENV, "").strip() or None
    if path is None:
        # Every arena asks; building (or finding the build) runs the compiler, so the answer
        # is kept per compiler and build directory for the life of the process.
        return _load_bundled(os.environ.get("CC", ""), os.environ.get(BUILD_DIR_ENV, ""))
    return _load(str(Path(path).resolve()))


@functools.cache
def _load_bundled(cc: str, directory: str) -> CArenaLibrary:
    del cc, directory  # the cache key: build_library reads both from the environment
    return _load(str(build_library().resolve()))


def unavailable_reason() -> str | None:
    """Why :func:`load_library` cannot work here, or None. A library named by
    ``$ARENACHECK_C_ARENA_LIB`` needs no compiler: failing to load it is an error."""
    if os.environ.get(LIBRARY_ENV, "").strip():
        return None
    return compiler_unavailable_reason()


# ------------------------------------------------------------ the VM through a backend


class BackendBridge:
    """A ``struct c_arena_vm`` whose functions call a :class:`Backend`.

    An exception cannot cross the C frames between a callback and the adapter, and ctypes
    would print and drop it, returning 0, which the arena would take for success. So each
    callback catches everything, keeps the exception in ``pending`` and returns a non-zero
    code (the errno of an ``OSCallFailed``, else ``CALLBACK_RAISED``); the adapter
    re-raises what is pending once the C call has returned.
    The bridge owns the ctypes thunks, so it must live as long as the native handle.
    """

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.pending: list[BaseException] = []
        self.table = VmTable(
            RESERVE_FN(self._reserve),
            SPAN_FN(self._commit),
            SPAN_FN(self._decommit),
            SPAN_FN(self._release),
        )

    def take(self) -> list[BaseException]:
        pending, self.pending = self.pending, []
        return pending

    def _failed(self, exc: BaseException) -> int:
        self.pending.append(exc)
        # The code as a C int would hold it (a Windows DWORD may not fit), and never 0:
        # that would read as success.
        code = ctypes.c_int(exc.code).value if isinstance(exc, OSCallFailed) else 0
        return code if code != 0 else CALLBACK_RAISED

    def _reserve(self, ctx: int | None, size: int, base: ctypes._Pointer[ctypes.c_uint64]) -> int:
        try:
            base[0] = self.backend.reserve(size)
        except BaseException as e:  # kept and re-raised by the adapter, see above
            return self._failed(e)
        return 0

    def _span(self, fn: Callable[[int, int], None], addr: int, size: int) -> int:
        try:
            fn(addr, size)
        except BaseException as e:  # kept and re-raised by the adapter, see above
            return self._failed(e)
        return 0

    def _commit(self, ctx: int | None, addr: int, size: int) -> int:
        return self._span(self.backend.commit, addr, size)

    def _decommit(self, ctx: int | None, addr: int, size: int) -> int:
        return self._span(self.backend.decommit, addr, size)

    def _release(self, ctx: int | None, addr: int, size: int) -> int:
        return self._span(self.backend.release, addr, size)


def memory_is_local(backend: Backend) -> bool:
    """Whether ``backend``'s reservations are mapped in this process, so that native code
    may touch them (the C arena writes its footer itself, and the adapter reads and writes
    with ctypes). A backend may say so in a ``memory_in_process`` attribute; otherwise one
    that keeps :class:`Backend`'s own in-process ``read`` and ``write`` is local, and a
    wrapper (an ``inner`` backend) is what it wraps. A backend that reads and writes some
    other way (over a pipe, into another process) is not: touching its addresses here would
    fault or, worse, hit an unrelated mapping of this process."""
    declared = getattr(backend, "memory_in_process", None)
    if isinstance(declared, bool):
        return declared
    inner = getattr(backend, "inner", None)
    if isinstance(inner, Backend):
        return memory_is_local(inner)
    kind = type(backend)
    return kind.read is Backend.read and kind.write is Backend.write


def _raise_pending(pending: list[BaseException]) -> NoReturn:
    """Raise the last exception, chained to the earlier ones as Python itself would have
    chained them had each later call run while handling the earlier failure."""
    for earlier, later in pairwise(pending):
        if later.__context__ is None:
            later.__context__ = earlier
    raise pending[-1]


def _destroy_tombstone(lib: CArenaLibrary, handle: int, bridge: BackendBridge | None) -> None:
    """Finalizer: free the native handle of a freed arena. A live one is left alone, as an
    unfreed ``impl.arena.Arena`` keeps its reservation: releasing it here would make an OS
    call from the garbage collector, outside any check. ``bridge`` is an argument only to
    keep the callbacks alive as long as the handle."""
    del bridge
    status, alive = lib.alive(handle)
    if status == Status.OK and not alive:
        lib.destroy(handle)


# ------------------------------------------------------------------------ the arena


class CArena:
    """The native arena with :class:`impl.arena.Arena`'s interface. Create it with
    :meth:`new`; every refusal leaves it unchanged."""

    def __init__(
        self,
        lib: CArenaLibrary,
        handle: int,
        geometry: Geometry,
        min_align: int,
        pool: bool,
        bridge: BackendBridge | None,
    ) -> None:
        self._lib = lib
        self._handle = handle
        self._geometry = geometry
        self._min_align = min_align
        self._pool = pool
        self._bridge = bridge
        self._finalizer = weakref.finalize(self, _destroy_tombstone, lib, handle, bridge)

    # ---------------------------------------------------------------- creation

    @classmethod
    def new(
        cls,
        backend: Backend,
        geometry: Geometry,
        min_align: int = 1,
        pool: bool = False,
        *,
        direct: bool = False,
        library: CArenaLibrary | None = None,
    ) -> CArena:
        """Reserve, commit the first chunk, write the footer; on failure nothing stays reserved.

        The OS calls go to ``backend`` unless ``direct``: then the library makes them itself
        (POSIX mmap family) and ``backend`` sees none of them. ``library`` defaults to the
        bundled source, built on first use.
        """
        if type(min_align) is not int or not 0 <= min_align <= _U64:
            raise InvalidLayout(f"MIN_ALIGN must be 1, 2, 4, 8 or 16, not {min_align!r}")
        if type(pool) is not bool:
            raise InvalidArgumentType(f"pool must be a bool, not {type(pool).__name__}")
        if not direct and not memory_is_local(backend):
            raise InvalidArgumentType(
                f"backend {backend.name!r} keeps its memory outside this process, and the C "
                "arena touches its memory directly"
            )
        lib = library if library is not None else load_library()
        bridge = None if direct else BackendBridge(backend)
        flags = POOL_FLAG if pool else 0
        status, handle, os_error = lib.create(
            geometry, min_align, flags, None if bridge is None else bridge.table
        )
        pending = [] if bridge is None else bridge.take()
        if status == Status.OK:
            arena = cls(lib, handle, geometry, min_align, pool, bridge)
            if pending:
                raise NativeAbiViolation(
                    "c_arena_create succeeded although a VM call failed"
                ) from pending[-1]
            return arena
        if pending:
            _raise_pending(pending)
        if status == Status.INVALID_LAYOUT:
            raise InvalidLayout(f"MIN_ALIGN must be 1, 2, 4, 8 or 16, not {min_align!r}")
        if status == Status.INVALID_ARGUMENT:
            raise GeometryError(
                f"the C arena refuses geometry {geometry!r} (its rules are in c_arena.h)"
            )
        if status == Status.OUT_OF_MEMORY:
            raise MemoryError("c_arena_create could not allocate its handle")
        failed = {Status.RESERVE_FAILED: "mmap", Status.COMMIT_FAILED: "mprotect"}
        if status in failed and bridge is None:
            what = "reserve" if status == Status.RESERVE_FAILED else "first commit"
            raise OSCallFailed(failed[Status(status)], os_error, f"{what} of a new arena")
        raise NativeAbiViolation(
            f"c_arena_create returned {status_name(status)}"
            + (" although no VM call failed" if status in failed else "")
        )

    # ---------------------------------------------------------- checked calls

    def _take_pending(self) -> list[BaseException]:
        return [] if self._bridge is None else self._bridge.take()

    def _unexpected(self, call: str, status: int) -> NoReturn:
        raise NativeAbiViolation(
            f"{call} returned {status_name(status)}, which c_arena.h rules out"
        )

    def _get(self, name: str) -> int:
        status, value = self._lib.get(name, self._handle)
        if status == Status.OK:
            return value
        if status == Status.USE_AFTER_FREE:
            raise UseAfterFree(f"the arena at {self.reservation:#x} was freed")
        self._unexpected(f"c_arena_{name}", status)

    def _require_alive(self) -> None:
        if not self.alive:
            raise UseAfterFree(f"the arena at {self.reservation:#x} was freed")

    # ----------------------------------------------------------- introspection

    @property
    def alive(self) -> bool:
        status, alive = self._lib.alive(self._handle)
        if status != Status.OK:
            self._unexpected("c_arena_alive", status)
        return alive

    @property
    def geometry(self) -> Geometry:
        return self._geometry

    @property
    def min_align(self) -> int:
        return self._min_align

    @property
    def reservation(self) -> int:
        """R: the base the OS returned."""
        status, value = self._lib.get("reservation", self._handle)
        if status != Status.OK:
            self._unexpected("c_arena_reservation", status)
        return value

    @property
    def container(self) -> int:
        """C: R rounded up to CONTAINER_ALIGN."""
        return self._get("container")

    @property
    def start(self) -> int:
        """S: the bottom of the committed region."""
        return self._get("start")

    @property
    def cursor(self) -> int:
        """P: the next allocation ends here."""
        return self._get("cursor")

    @property
    def footer(self) -> int:
        """F: the cursor never goes above it."""
        return self._get("footer")

    @property
    def committed_bytes(self) -> int:
        return self._get("committed_bytes")

    @property
    def last_os_error(self) -> int:
        """The code of the most recent failed OS call after creation, 0 if none."""
        status, code = self._lib.last_os_error(self._handle)
        if status != Status.OK:
            self._unexpected("c_arena_last_os_error", status)
        return code

    def footer_bytes(self) -> bytes:
        """What ``new`` wrote at F: the same content as :class:`impl.arena.Arena` writes."""
        return _FOOTER.pack(FOOTER_MAGIC, self.reservation)

    # -------------------------------------------------------------- allocation

    def _layout_args(self, size: object, align: object) -> tuple[int, int]:
        """Refuse in Python what cannot cross into a uint64_t; the rest of Rust's Layout
        rule (power of two, rounded size <= isize::MAX) is the C arena's to check."""
        problem: Exception | None = None
        if type(size) is not int:
            problem = InvalidArgumentType(f"size must be an int, not {type(size).__name__}")
        elif type(align) is not int:
            problem = InvalidArgumentType(f"align must be an int, not {type(align).__name__}")
        elif size < 0:
            problem = InvalidLayout(f"size {size} is negative")
        elif size > _U64:
            problem = InvalidLayout(f"size {size} does not fit in a usize")
        elif not 0 < align <= _U64:
            problem = InvalidLayout(f"align {align} is not a power of two <= 2**63")
        if problem is not None:
            # A freed arena refuses everything as a use after free, bad arguments included.
            self._require_alive()
            raise problem
        assert isinstance(size, int) and isinstance(align, int)
        return size, align

    def _alloc(self, size: object, align: object) -> tuple[int | None, BaseException | None]:
        """(address, None), or (None, why) when full: why is the refused commit, if any."""
        size, align = self._layout_args(size, align)
        status, addr = self._lib.alloc(self._handle, size, align)
        pending = self._take_pending()
        if any(not isinstance(e, OSCallFailed) for e in pending):
            _raise_pending(pending)
        if status == Status.OK and not pending:
            return addr, None
        if status == Status.FULL and not pending:
            return None, None
        if status == Status.COMMIT_FAILED and (pending or self._bridge is None):
            # A refused commit makes this allocation fail as full, as in impl.arena.Arena.
            code = self.last_os_error
            cause = pending[-1] if pending else OSCallFailed("mprotect", code, "grow commit")
            return None, cause
        if status == Status.INVALID_LAYOUT:
            raise InvalidLayout(
                f"({size}, {align}) is not a layout: align must be a power of two <= 2**63 "
                "and size rounded up to it <= isize::MAX"
            )
        if status == Status.USE_AFTER_FREE:
            raise UseAfterFree(f"the arena at {self.reservation:#x} was freed")
        if pending:
            raise NativeAbiViolation(
                f"c_arena_alloc returned {status_name(status)} although a VM call failed"
            ) from pending[-1]
        self._unexpected("c_arena_alloc", status)

    def try_alloc(self, size: object, align: object = 1) -> int | None:
        """The address of ``size`` fresh bytes aligned on ``align``, or None when full."""
        addr, _ = self._alloc(size, align)
        return addr

    def alloc(self, size: object, align: object = 1) -> int:
        """As :meth:`try_alloc`, but a full arena raises :class:`ArenaFull`."""
        addr, cause = self._alloc(size, align)
        if addr is None:
            raise ArenaFull(f"no room for {size} bytes aligned on {align}") from cause
        return addr

    def reset(self) -> None:
        """Forget every allocation; the committed region is kept for reuse."""
        status = self._lib.reset(self._handle)
        if status == Status.USE_AFTER_FREE:
            raise UseAfterFree(f"the arena at {self.reservation:#x} was freed")
        if status != Status.OK:
            self._unexpected("c_arena_reset", status)

    def free(self) -> None:
        """Release the whole reservation. A second call raises DoubleFree and calls no OS."""
        status = self._lib.free(self._handle)
        pending = self._take_pending()
        if pending and status != Status.OK:
            _raise_pending(pending)
        if status == Status.OK and not pending:
            return
        if status == Status.DOUBLE_FREE and not pending:
            raise DoubleFree(f"the arena at {self.reservation:#x} was already freed")
        if status == Status.RELEASE_FAILED and self._bridge is None:
            raise OSCallFailed("munmap", self.last_os_error, f"release of {self.reservation:#x}")
        if pending:
            raise NativeAbiViolation(
                f"c_arena_free returned {status_name(status)} although a VM call failed"
            ) from pending[-1]
        self._unexpected("c_arena_free", status)

    # ------------------------------------------------------------- memory I/O

    def _check_span(self, cursor: int, addr: object, n: object) -> tuple[int, int]:
        if type(addr) is not int:
            raise InvalidArgumentType(f"addr must be an int, not {type(addr).__name__}")
        if type(n) is not int:
            raise InvalidArgumentType(f"n must be an int, not {type(n).__name__}")
        if n < 0:
            raise OutOfBounds(f"length {n} is negative")
        # F, or C + ACTIVE_SIZE below a pool arena's metadata.
        top = self._get("container") + self._geometry.active_size if self._pool else self.footer
        if not (cursor <= addr and addr + n <= top):
            raise OutOfBounds(
                f"[{addr:#x}, +{n:#x}) is outside the allocated bytes [{cursor:#x}, {top:#x})"
            )
        return addr, n

    def read(self, addr: object, n: object) -> bytes:
        """Bytes of allocated memory ``[P, F)`` (pool: ``[P, C + ACTIVE_SIZE)``); else refused."""
        cursor = self.cursor  # first, so that a freed arena refuses as a use after free
        addr, n = self._check_span(cursor, addr, n)
        return ctypes.string_at(addr, n)

    def write(self, addr: object, data: object) -> None:
        """Store into allocated memory ``[P, F)`` (pool: ``[P, C + ACTIVE_SIZE)``); else refused."""
        cursor = self.cursor
        if not isinstance(data, bytes | bytearray | memoryview):
            raise InvalidArgumentType(f"data must be bytes-like, not {type(data).__name__}")
        payload = bytes(data)
        addr, _ = self._check_span(cursor, addr, len(payload))
        ctypes.memmove(addr, payload, len(payload))
