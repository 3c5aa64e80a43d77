"""The fixed-size arena over a virtual-memory backend (``reserve-commit`` strategy).

A reservation of ``RESERVED_SIZE`` bytes holds a container aligned on
``CONTAINER_ALIGN``; the committed region ``[S, C + CONTAINER_SIZE)`` starts as the top
``FIRST_COMMIT`` bytes and grows down by doubling; allocations bump a cursor down from
the footer. Invariant between calls: ``C <= S <= P <= F``, S page-aligned, exactly
``[S, C + CONTAINER_SIZE)`` committed, and every refused call changed nothing.
"""

from __future__ import annotations

import struct

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
from arenacheck.model.geometry import Geometry

_U64 = (1 << 64) - 1
_ISIZE_MAX = (1 << 63) - 1
FOOTER_MAGIC = 0xA4E7_A4E7_F007_E400
RESERVE_COMMIT = "reserve-commit"
SYSTEM = "system"
TIGHT = "tight"
STRATEGIES = (RESERVE_COMMIT, SYSTEM, TIGHT)
# Windows without VirtualAlloc2 re-reserves the container after releasing the over-sized
# reservation; another thread may take the range in between, so it tries a few times.
TIGHT_RETRIES = 3
_FOOTER = struct.Struct("<QQ")


def _require_int(name: str, value: object) -> int:
    if type(value) is not int:
        raise InvalidArgumentType(f"{name} must be an int, not {type(value).__name__}")
    return value


def check_layout(size: object, align: object) -> tuple[int, int]:
    """Rust's ``Layout::from_size_align``: a power-of-two align, size rounded <= isize::MAX."""
    size = _require_int("size", size)
    align = _require_int("align", align)
    if size < 0:
        raise InvalidLayout(f"size {size} is negative")
    if align <= 0 or align & (align - 1) or align > 1 << 63:
        raise InvalidLayout(f"align {align} is not a power of two <= 2**63")
    if (size + align - 1) // align * align > _ISIZE_MAX:
        raise InvalidLayout(f"size {size} rounded up to align {align} exceeds isize::MAX")
    return size, align


class Arena:
    """One fixed-size arena. Create it with :meth:`new`."""

    def __init__(
        self,
        backend: Backend,
        geometry: Geometry,
        reservation: int,
        min_align: int,
        pool: bool,
    ) -> None:
        self._backend = backend
        self._geometry = geometry
        self._reservation = reservation
        self._min_align = min_align
        self._pool = pool
        align = geometry.container_align
        self._container = (reservation + align - 1) & ~(align - 1)
        self._container_end = self._container + geometry.container_size
        self._footer = self._container + geometry.footer_offset
        self._start = self._container_end - geometry.first_commit
        self._cursor = self._reset_cursor()
        self._alive = True
        self._reserved_size = geometry.reserved_size

    # ---------------------------------------------------------------- creation

    @classmethod
    def new(
        cls,
        backend: Backend,
        geometry: Geometry,
        min_align: int = 1,
        pool: bool = False,
        strategy: str = RESERVE_COMMIT,
    ) -> Arena:
        """Reserve, commit the first chunk, write the footer; on failure nothing stays reserved.

        ``strategy`` is ``reserve-commit`` (the default) or ``system``: the whole block
        obtained already committed, as before the reserve + commit fix; every byte is
        charged at creation, so creation fails under a commit limit.
        """
        if type(min_align) is not int or min_align not in (1, 2, 4, 8, 16):
            raise InvalidLayout(f"MIN_ALIGN must be 1, 2, 4, 8 or 16, not {min_align!r}")
        if strategy == SYSTEM:
            reservation = backend.reserve_committed(geometry.reserved_size)
            arena = cls(backend, geometry, reservation, min_align, pool)
            arena._start = arena._container
            arena._write_footer()
            return arena
        if strategy == TIGHT:
            tight = cls._reserve_tight(backend, geometry)
            if tight is None:
                return cls.new(backend, geometry, min_align, pool)  # fall back: reserve-commit
            arena = cls(backend, geometry, tight, min_align, pool)
            arena._reserved_size = geometry.container_size
            arena._commit_first()
            return arena
        if strategy != RESERVE_COMMIT:
            raise ValueError(f"unknown strategy {strategy!r}: one of {', '.join(STRATEGIES)}")
        reservation = backend.reserve(geometry.reserved_size)
        arena = cls(backend, geometry, reservation, min_align, pool)
        arena._commit_first()
        return arena

    @staticmethod
    def _reserve_tight(backend: Backend, geometry: Geometry) -> int | None:
        """Exactly CONTAINER_SIZE reserved at a CONTAINER_ALIGN-aligned base, or None.

        One aligned reservation where the OS offers it (VirtualAlloc2); else reserve the
        over-sized block and give back head and tail (munmap can); else release it and
        reserve the container at C, a bounded number of times.
        """
        size, align = geometry.container_size, geometry.container_align
        base = backend.reserve_aligned(size, align)
        if base is not None:
            return base
        if backend.partial_release:
            r0 = backend.reserve(geometry.reserved_size)
            c = (r0 + align - 1) & ~(align - 1)
            end = r0 + geometry.reserved_size
            try:
                if c > r0:
                    backend.release(r0, c - r0)
                backend.release(c + size, end - (c + size))
            except OSCallFailed:
                backend.release(r0, geometry.reserved_size)  # munmap ignores the holes
                raise
            return c
        for _ in range(TIGHT_RETRIES):
            r0 = backend.reserve(geometry.reserved_size)
            backend.release(r0, geometry.reserved_size)
            c = (r0 + align - 1) & ~(align - 1)
            if backend.reserve_at(c, size):
                return c
        return None

    def _commit_first(self) -> None:
        """Commit ``[S0, S0 + FIRST_COMMIT)`` and write the footer; on failure, release all."""
        backend, geometry, arena = self._backend, self._geometry, self
        try:
            backend.commit(arena._start, geometry.first_commit)
        except OSCallFailed:
            arena._release()
            raise
        arena._write_footer()

    def _reset_cursor(self) -> int:
        if self._pool:
            return self._container + self._geometry.active_size
        return self._footer

    def _write_footer(self) -> None:
        self._backend.write(self._footer, _FOOTER.pack(FOOTER_MAGIC, self._reservation))

    def footer_bytes(self) -> bytes:
        """What ``new`` wrote at F: a magic number and R, so corruption is detectable."""
        return _FOOTER.pack(FOOTER_MAGIC, self._reservation)

    # ----------------------------------------------------------- introspection

    def _live(self) -> None:
        if not self._alive:
            raise UseAfterFree(f"the arena at {self._reservation:#x} was freed")

    @property
    def alive(self) -> bool:
        return self._alive

    @property
    def geometry(self) -> Geometry:
        return self._geometry

    @property
    def min_align(self) -> int:
        return self._min_align

    @property
    def reservation(self) -> int:
        """R: the base the OS returned."""
        return self._reservation

    @property
    def container(self) -> int:
        """C: R rounded up to CONTAINER_ALIGN."""
        return self._container

    @property
    def start(self) -> int:
        """S: the bottom of the committed region."""
        self._live()
        return self._start

    @property
    def cursor(self) -> int:
        """P: the next allocation ends here."""
        self._live()
        return self._cursor

    @property
    def footer(self) -> int:
        """F: the cursor never goes above it."""
        return self._footer

    @property
    def committed_bytes(self) -> int:
        self._live()
        return self._container_end - self._start

    # -------------------------------------------------------------- allocation

    def try_alloc(self, size: object, align: object = 1) -> int | None:
        """The address of ``size`` fresh bytes aligned on ``align``, or None when full."""
        self._live()
        size, align = check_layout(size, align)
        a = max(align, self._min_align)
        p = ((self._cursor - size) & _U64) & ~(a - 1) & _U64
        if (p - self._start) & _U64 <= _ISIZE_MAX:
            self._cursor = p
            return p
        return self._grow_and_alloc(p)

    def _grow_start(self, p: int) -> int | None:
        """The new S for an allocation at ``p`` below S, or None when even C is too high."""
        if (p - self._container) & _U64 > _ISIZE_MAX:
            return None
        committed = self._container_end - self._start
        doubled = max(self._start - committed, self._container)
        return min(doubled, p & ~(self._geometry.page - 1))

    def _grow_and_alloc(self, p: int) -> int | None:
        """Commit down to the new S, then move S and P; a refused commit changes nothing."""
        new_start = self._grow_start(p)
        if new_start is None:
            return None
        try:
            self._backend.commit(new_start, self._start - new_start)
        except OSCallFailed:
            return None
        self._start = new_start
        self._cursor = p
        return p

    def alloc(self, size: object, align: object = 1) -> int:
        """As :meth:`try_alloc`, but a full arena raises :class:`ArenaFull`."""
        addr = self.try_alloc(size, align)
        if addr is None:
            raise ArenaFull(f"no room for {size} bytes aligned on {align}")
        return addr

    def reset(self) -> None:
        """Forget every allocation; the committed region is kept for reuse."""
        self._live()
        self._cursor = self._reset_cursor()

    def free(self) -> None:
        """Release the whole reservation. A second call raises DoubleFree and calls no OS."""
        if not self._alive:
            raise DoubleFree(f"the arena at {self._reservation:#x} was already freed")
        self._release()

    def _release(self) -> None:
        self._backend.release(self._reservation, self._reserved_size)
        self._alive = False

    # ------------------------------------------------------------- memory I/O

    def _check_span(self, addr: object, n: object) -> tuple[int, int]:
        addr = _require_int("addr", addr)
        n = _require_int("n", n)
        if n < 0:
            raise OutOfBounds(f"length {n} is negative")
        top = self._reset_cursor()  # F, or C + ACTIVE_SIZE below a pool arena's metadata
        if not (self._cursor <= addr and addr + n <= top):
            raise OutOfBounds(
                f"[{addr:#x}, +{n:#x}) is outside the allocated bytes [{self._cursor:#x}, {top:#x})"
            )
        return addr, n

    def read(self, addr: object, n: object) -> bytes:
        """Bytes of allocated memory ``[P, F)`` (pool: ``[P, C + ACTIVE_SIZE)``); else refused."""
        self._live()
        addr, n = self._check_span(addr, n)
        return self._backend.read(addr, n)

    def write(self, addr: object, data: object) -> None:
        """Store into allocated memory ``[P, F)`` (pool: ``[P, C + ACTIVE_SIZE)``); else refused."""
        self._live()
        if not isinstance(data, bytes | bytearray | memoryview):
            raise InvalidArgumentType(f"data must be bytes-like, not {type(data).__name__}")
        payload = bytes(data)
        addr, _ = self._check_span(addr, len(payload))
        self._backend.write(addr, payload)


def system_arena(backend: Backend, geometry: Geometry, min_align: int = 1) -> Arena:
    """An arena with the ``system`` strategy (``--arena-impl impl.arena:system_arena``)."""
    return Arena.new(backend, geometry, min_align, strategy=SYSTEM)


def tight_arena(backend: Backend, geometry: Geometry, min_align: int = 1) -> Arena:
    """An arena with the ``tight`` strategy (``--arena-impl impl.arena:tight_arena``)."""
    return Arena.new(backend, geometry, min_align, strategy=TIGHT)
