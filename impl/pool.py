"""oxc's pool of fixed-size arenas, both platform behaviours, and shared ownership.

``behaviour="posix"``: exactly ``thread_count`` arenas; ``get`` on an empty pool is an error.
``behaviour="windows"``: arenas are created while creation succeeds, up to
``thread_count + 1``; none is an error, two or more give the last one back to the OS; ``get``
waits on a condition variable until an arena is added. Either runs on any OS: the
behaviour is the pool's policy, not the backend's.

Each pool arena keeps its metadata in its own memory, written through the backend (the
arena's own ``write`` stops at ``C + ACTIVE_SIZE``): 16 bytes of transfer metadata at
``C + ACTIVE_SIZE``, the ``u32`` id at ``C + BUFFER_SIZE`` and the ``is_double_owned`` byte
at ``C + BUFFER_SIZE + 4``. All of it lies in the first commit, so it is always committed.

Invariant, whenever the pool's lock is free: every arena the pool kept is in exactly one of
the stack, the handed-out set and the retired set, and the stack holds each at most once.
"""

from __future__ import annotations

import enum
import struct
import threading
from typing import Literal

from arenacheck.impl.arena import Arena
from arenacheck.impl.backend import Backend
from arenacheck.impl.errors import (
    OSCallFailed,
    PoolClosed,
    PoolCreationFailed,
    PoolEmpty,
    PoolMisuse,
    ReleaseRefused,
    UseAfterFree,
)
from arenacheck.model.geometry import Geometry

Behaviour = Literal["posix", "windows"]
BEHAVIOURS: tuple[Behaviour, ...] = ("posix", "windows")

TRANSFER_MAGIC = 0x5846_4552_4D45_5441
_TRANSFER = struct.Struct("<QQ")  # where the data begins (offset from C), marker
_POOL_METADATA = struct.Struct("<IB3x")  # id, is_double_owned, padding
_FLAG_OFFSET = 4


class Owner(enum.Enum):
    POOL = "pool"  # the pool side: the pool, or the thread holding the arena
    ENGINE = "engine"  # the second party the buffer was shared with


class Release(enum.Enum):
    KEPT = "kept"  # the other owner still holds the memory
    FREED = "freed"  # this was the last owner: the reservation went back to the OS


class PoolArena:
    """A pool arena: the arena, its id, and the owners of its memory.

    Invariant: the memory is alive exactly while ``owners`` is non-empty, and the flag in
    memory is set exactly while both owners hold it. Every ownership change happens under
    the arena's own lock, which makes the flag's swap atomic.
    """

    def __init__(self, pool: ArenaPool, arena: Arena, arena_id: int, backend: Backend) -> None:
        self.pool = pool
        self.arena = arena
        self.id = arena_id
        self._backend = backend
        self._lock = threading.Lock()
        self._owners = {Owner.POOL}

    def __repr__(self) -> str:
        return f"PoolArena(id={self.id}, reservation={self.arena.reservation:#x})"

    # ------------------------------------------------------------- metadata

    @property
    def transfer_address(self) -> int:
        return self.arena.container + self.arena.geometry.active_size

    @property
    def id_address(self) -> int:
        return self.arena.container + self.arena.geometry.buffer_size

    @property
    def flag_address(self) -> int:
        return self.id_address + _FLAG_OFFSET

    def _write_transfer(self) -> None:
        """Record where the data begins (the cursor, as an offset from C) for the engine."""
        offset = self.arena.cursor - self.arena.container
        self._backend.write(self.transfer_address, _TRANSFER.pack(offset, TRANSFER_MAGIC))

    def _write_initial_metadata(self) -> None:
        self._write_transfer()
        self._backend.write(self.id_address, _POOL_METADATA.pack(self.id, 0))

    def _write_flag(self, value: bool) -> None:
        self._backend.write(self.flag_address, bytes([int(value)]))

    def _read_flag(self) -> bool:
        return self._backend.read(self.flag_address, 1) != b"\x00"

    @property
    def alive(self) -> bool:
        """Whether the memory is still reserved (some owner still holds it)."""
        return self.arena.alive

    @property
    def is_double_owned(self) -> bool:
        """The flag as stored in memory; refused once the memory is gone."""
        with self._lock:
            if not self.arena.alive:
                raise UseAfterFree(f"arena {self.id}'s memory was released")
            return self._read_flag()

    def owners(self) -> frozenset[Owner]:
        with self._lock:
            return frozenset(self._owners)

    # ------------------------------------------------------------ ownership

    def share(self) -> None:
        """Hand the buffer to a second owner: write the transfer metadata, set the flag.

        Refused (nothing changes) when the memory is gone or the engine already owns it.
        """
        with self._lock:
            if not self.arena.alive:
                raise UseAfterFree(f"arena {self.id}'s memory was released")
            if Owner.ENGINE in self._owners:
                raise PoolMisuse(f"arena {self.id} is already shared")
            self._write_transfer()
            self._write_flag(True)
            self._owners.add(Owner.ENGINE)

    def release_by_engine(self) -> Release:
        """The engine's free function (in oxc, the JavaScript buffer's finaliser)."""
        return self._release(Owner.ENGINE)

    def _release(self, owner: Owner) -> Release:
        """docs/ARENA.md 5: swap the flag to False; if it was set, the other owner frees.

        A release by an owner that does not own the memory, or after it was released, is
        refused before any memory is read or any OS call is made: the range may already
        belong to someone else.
        """
        with self._lock:
            if not self.arena.alive:
                raise ReleaseRefused(f"arena {self.id}'s memory was already released")
            if owner not in self._owners:
                raise ReleaseRefused(f"the {owner.value} side does not own arena {self.id}")
            self._owners.discard(owner)
            was_double_owned = self._read_flag()
            self._write_flag(False)
            if was_double_owned:
                return Release.KEPT
            self.arena.free()
            return Release.FREED

    # ---------------------------------------------------------- allocation

    def alloc(self, size: object, align: object = 1) -> int:
        return self.arena.alloc(size, align)

    def try_alloc(self, size: object, align: object = 1) -> int | None:
        return self.arena.try_alloc(size, align)

    def read(self, addr: object, n: object) -> bytes:
        return self.arena.read(addr, n)

    def write(self, addr: object, data: object) -> None:
        self.arena.write(addr, data)


class ArenaPool:
    """A thread-safe pool of pool arenas; see the module docstring for the two behaviours.

    ``condition`` is the condition variable (and so the lock) the pool uses; by default a
    fresh ``threading.Condition``. Passing one lets a harness observe waits and wake-ups.
    """

    def __init__(
        self,
        backend: Backend,
        geometry: Geometry,
        thread_count: int,
        behaviour: Behaviour = "posix",
        *,
        min_align: int = 1,
        condition: threading.Condition | None = None,
    ) -> None:
        if type(thread_count) is not int or thread_count < 1:
            raise PoolMisuse(f"thread_count must be an int >= 1, not {thread_count!r}")
        if behaviour not in BEHAVIOURS:
            raise PoolMisuse(f"behaviour must be one of {BEHAVIOURS}, not {behaviour!r}")
        self._backend = backend
        self._geometry = geometry
        self._thread_count = thread_count
        self._behaviour: Behaviour = behaviour
        self._min_align = min_align
        self._cond = condition if condition is not None else threading.Condition()
        self._closed = False
        self._out: set[int] = set()
        self._retired: set[int] = set()
        created = self._create()
        self._arenas = {a.id: a for a in created}
        self._stack: list[PoolArena] = list(created)

    # -------------------------------------------------------------- creation

    def _create_one(self, arena_id: int) -> PoolArena:
        arena = Arena.new(self._backend, self._geometry, self._min_align, pool=True)
        pool_arena = PoolArena(self, arena, arena_id, self._backend)
        pool_arena._write_initial_metadata()
        return pool_arena

    def _create(self) -> list[PoolArena]:
        """docs/ARENA.md 5 "Pool(thread_count)"; on failure nothing stays reserved."""
        created: list[PoolArena] = []
        if self._behaviour == "posix":
            for i in range(self._thread_count):
                try:
                    created.append(self._create_one(i))
                except OSCallFailed as e:
                    while created:
                        created.pop().arena.free()
                    raise PoolCreationFailed(
                        f"could not create arena {i} of {self._thread_count}: {e}"
                    ) from e
            return created
        failure: OSCallFailed | None = None
        for i in range(self._thread_count + 1):
            try:
                created.append(self._create_one(i))
            except OSCallFailed as e:
                failure = e
                break
        if not created:
            raise PoolCreationFailed("insufficient memory to create the pool") from failure
        if len(created) >= 2:
            # Give one arena's memory back, so the rest of the process is not starved.
            created.pop().arena.free()
        return created

    # ----------------------------------------------------------- properties

    @property
    def behaviour(self) -> Behaviour:
        return self._behaviour

    @property
    def thread_count(self) -> int:
        return self._thread_count

    @property
    def geometry(self) -> Geometry:
        return self._geometry

    @property
    def closed(self) -> bool:
        with self._cond:
            return self._closed

    def arenas(self) -> list[PoolArena]:
        """Every arena the pool kept at construction, by id."""
        return [self._arenas[i] for i in sorted(self._arenas)]

    def contents(self) -> list[int]:
        """Ids in the pool, bottom of the stack first (the next ``get`` takes the last)."""
        with self._cond:
            return [a.id for a in self._stack]

    def handed_out(self) -> set[int]:
        with self._cond:
            return set(self._out)

    def retired(self) -> set[int]:
        with self._cond:
            return set(self._retired)

    # ----------------------------------------------------------- get / add

    def get(self) -> PoolArena:
        """Pop an arena. Empty: POSIX raises PoolEmpty, Windows waits for an ``add``."""
        with self._cond:
            while True:
                # Re-checked after every wake-up: another get may have taken the arena
                # first, and a condition variable may wake a thread for nothing.
                if self._closed:
                    raise PoolClosed("the pool was closed")
                if self._stack:
                    return self._take()
                if self._behaviour == "posix":
                    raise PoolEmpty("get on an empty pool")
                self._cond.wait()

    def _take(self) -> PoolArena:
        arena = self._stack.pop()
        self._out.add(arena.id)
        return arena

    def _check_handed_out(self, arena: object, what: str) -> PoolArena:
        if not isinstance(arena, PoolArena) or arena.pool is not self:
            raise PoolMisuse(f"{what}: {arena!r} does not belong to this pool")
        if arena.id in self._retired:
            raise PoolMisuse(f"{what}: arena {arena.id} was let go")
        if arena.id not in self._out:
            raise PoolMisuse(f"{what}: arena {arena.id} is in the pool, not handed out")
        return arena

    def add(self, arena: PoolArena) -> None:
        """Return a handed-out arena: reset its cursor to C + ACTIVE_SIZE, push, wake one.

        Refused, with nothing changed, for an arena the pool did not hand out, or when the
        pool is closed (the holder then lets go with :meth:`retire`).
        """
        with self._cond:
            checked = self._check_handed_out(arena, "add")
            if self._closed:
                raise PoolClosed("add: the pool was closed")
            self._out.discard(checked.id)
            self._reset(checked)
            self._push(checked)

    def _reset(self, arena: PoolArena) -> None:
        # A pool arena's reset stops below the metadata; F would let allocations overwrite it.
        arena.arena.reset()

    def _push(self, arena: PoolArena) -> None:
        # Python's Condition needs its lock held to notify, unlike Rust's Condvar, so the
        # notify happens before the lock is released.
        self._stack.append(arena)
        if self._behaviour == "windows":
            self._cond.notify()

    # --------------------------------------------------------- letting go

    def retire(self, arena: PoolArena) -> Release:
        """The holder lets go of a handed-out arena instead of returning it (the pool side's
        release). A second retire is refused with ReleaseRefused and makes no OS call."""
        with self._cond:
            if isinstance(arena, PoolArena) and arena.pool is self and arena.id in self._retired:
                raise ReleaseRefused(f"arena {arena.id} was already let go by the pool side")
            checked = self._check_handed_out(arena, "retire")
            self._out.discard(checked.id)
            self._retired.add(checked.id)
        return checked._release(Owner.POOL)

    def close(self) -> list[tuple[int, Release]]:
        """Drop the pool: the pool side lets go of every arena in it (top first), and every
        waiting thread wakes with PoolClosed. Arenas handed out stay with their holders."""
        with self._cond:
            if self._closed:
                return []
            self._closed = True
            dropping = list(reversed(self._stack))
            self._stack.clear()
            self._retired.update(a.id for a in dropping)
            self._cond.notify_all()
        return [(a.id, a._release(Owner.POOL)) for a in dropping]
