"""The native fixed-size arena (``native/c_arena.c``) with :class:`impl.arena.Arena`'s interface.

:class:`CArena` drives a library that exports the ``native/c_arena.h`` ABI (the bundled
source, built on first use, or one named by ``$ARENACHECK_C_ARENA_LIB``: see
:mod:`impl.c_load`) and turns its statuses into the Python arena's typed errors, so every
machine runs against it (``--arenacheck-impl arenacheck.impl.c_arena:CArena``).

The arena's OS calls go through a table of callbacks into a :class:`~impl.backend.Backend`
(:mod:`impl.c_bridge`; so a recording backend sees, logs and fences each of them, exactly as
for the Python arena), or, with ``direct=True``, through the library's own
mmap/mprotect/munmap.

Invariant: a :class:`CArena` answers every question about its state from the native
library's getters, never from a copy of its own; only the geometry, MIN_ALIGN and the pool
flag it was created with are kept in Python.
"""

from __future__ import annotations

import ctypes
import struct
import weakref
from typing import ClassVar, NoReturn

from arenacheck.impl import host
from arenacheck.impl.arena import FOOTER_MAGIC
from arenacheck.impl.backend import Backend
from arenacheck.impl.c_abi import (
    POOL_FLAG,
    CArenaLibrary,
    NativeAbiViolation,
    Status,
    status_name,
)
from arenacheck.impl.c_bridge import BackendBridge, memory_is_local, raise_pending
from arenacheck.impl.c_load import load_library, unavailable_reason
from arenacheck.impl.errors import (
    ArenaFull,
    DoubleFree,
    InvalidArgumentType,
    InvalidLayout,
    OSCallFailed,
    OutOfBounds,
    UseAfterFree,
)
from arenacheck.model.geometry import Geometry, GeometryError

# The adapter's own names, and those of the library it runs on, which callers of
# ``arenacheck.impl.c_arena:CArena`` need beside it (to pick a library, to catch its bugs).
__all__ = [
    "CArena",
    "CArenaDirect",
    "CArenaLibrary",
    "NativeAbiViolation",
    "load_library",
    "unavailable_reason",
]

_U64 = (1 << 64) - 1
_FOOTER = struct.Struct("<QQ")
# What the library's own VM calls are, to name the one that failed.
DIRECT_RESERVE, DIRECT_COMMIT, DIRECT_RELEASE = (
    ("VirtualAlloc", "VirtualAlloc", "VirtualFree")
    if host.IS_WINDOWS
    else ("mmap", "mprotect", "munmap")
)


def _destroy_tombstone(lib: CArenaLibrary, handle: int, bridge: BackendBridge | None) -> None:
    """Finalizer: free the native handle of a freed arena. A live one is left alone, as an
    unfreed ``impl.arena.Arena`` keeps its reservation: releasing it here would make an OS
    call from the garbage collector, outside any check. ``bridge`` is an argument only to
    keep the callbacks alive as long as the handle."""
    del bridge
    status, alive = lib.alive(handle)
    if status == Status.OK and not alive:
        lib.destroy(handle)


class CArena:
    """The native arena with :class:`impl.arena.Arena`'s interface. Create it with
    :meth:`new`; every refusal leaves it unchanged."""

    # Native code stores into the arena's memory itself: a wild store kills its process,
    # so the harness runs it in a child process unless told otherwise.
    touches_memory_itself: ClassVar[bool] = True
    # The library's own VM calls (the table's ``vm == NULL``) instead of the backend's: a
    # harness then sees them only through the OS's view.
    makes_os_calls_itself: ClassVar[bool] = False

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
    def default_library(cls) -> CArenaLibrary:
        """The library ``new`` runs on when given none: the bundled C source, built on first
        use, or the one ``$ARENACHECK_C_ARENA_LIB`` names."""
        return load_library()

    @classmethod
    def new(
        cls,
        backend: Backend,
        geometry: Geometry,
        min_align: int = 1,
        pool: bool = False,
        *,
        direct: bool | None = None,
        library: CArenaLibrary | None = None,
    ) -> CArena:
        """Reserve, commit the first chunk, write the footer; on failure nothing stays reserved.

        The OS calls go to ``backend`` unless ``direct`` (default: the class's
        ``makes_os_calls_itself``): then the library makes them itself (mmap and mprotect,
        or VirtualAlloc on Windows) and ``backend`` sees none of them. ``library`` defaults
        to the class's :meth:`default_library`.
        """
        if direct is None:
            direct = cls.makes_os_calls_itself
        if type(min_align) is not int or not 0 <= min_align <= _U64:
            raise InvalidLayout(f"MIN_ALIGN must be 1, 2, 4, 8 or 16, not {min_align!r}")
        if type(pool) is not bool:
            raise InvalidArgumentType(f"pool must be a bool, not {type(pool).__name__}")
        if not direct and not memory_is_local(backend):
            raise InvalidArgumentType(
                f"backend {backend.name!r} keeps its memory outside this process, and the C "
                "arena touches its memory directly"
            )
        lib = library if library is not None else cls.default_library()
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
            raise_pending(pending)
        if status == Status.INVALID_LAYOUT:
            raise InvalidLayout(f"MIN_ALIGN must be 1, 2, 4, 8 or 16, not {min_align!r}")
        if status == Status.INVALID_ARGUMENT:
            raise GeometryError(
                f"the C arena refuses geometry {geometry!r} (its rules are in c_arena.h)"
            )
        if status == Status.OUT_OF_MEMORY:
            raise MemoryError("c_arena_create could not allocate its handle")
        failed = {Status.RESERVE_FAILED: DIRECT_RESERVE, Status.COMMIT_FAILED: DIRECT_COMMIT}
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
            raise_pending(pending)
        if status == Status.OK and not pending:
            return addr, None
        if status == Status.FULL and not pending:
            return None, None
        if status == Status.COMMIT_FAILED and (pending or self._bridge is None):
            # A refused commit makes this allocation fail as full, as in impl.arena.Arena.
            code = self.last_os_error
            cause = pending[-1] if pending else OSCallFailed(DIRECT_COMMIT, code, "grow commit")
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
            raise_pending(pending)
        if status == Status.OK and not pending:
            return
        if status == Status.DOUBLE_FREE and not pending:
            raise DoubleFree(f"the arena at {self.reservation:#x} was already freed")
        if status == Status.RELEASE_FAILED and self._bridge is None:
            raise OSCallFailed(
                DIRECT_RELEASE, self.last_os_error, f"release of {self.reservation:#x}"
            )
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


class CArenaDirect(CArena):
    """The C arena making its own mmap/mprotect/munmap calls: the harness sees them only
    through the OS's view of memory."""

    makes_os_calls_itself = True
