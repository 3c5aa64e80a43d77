"""Reference model of oxc's arena pool and of shared ownership (docs/ARENA.md section 5).

The pool model tracks where each arena is (in the pool's stack, held by a thread, or let go
by its pool-side owner), which threads wait in ``get``, and who owns each arena's memory.
Arena ids are the creation indices ``0, 1, ...``; the stack is LIFO, bottom first.

Invariants of a ``PoolModel`` (``violations`` lists any that fail):

* every kept arena is in exactly one of the stack, a holder's hands, or the retired set, so
  pool + held + retired = kept;
* a thread holds at most one arena and no arena is held by two threads;
* threads wait only in the Windows behaviour, and only while the stack is empty;
* an arena's memory is alive exactly while one of its two owners still owns it, and its
  ``is_double_owned`` flag is set exactly while both do.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass, field
from typing import Final

from arenacheck.model.arena import ArenaModel
from arenacheck.model.geometry import POOL_METADATA_SIZE, TRANSFER_METADATA_SIZE, Geometry

POSIX: Final = "posix"
WINDOWS: Final = "windows"
BEHAVIOURS = (POSIX, WINDOWS)

# The model's own copy of the marker the pool writes into the transfer metadata: a layout
# change in the implementation then shows up as a metadata mismatch.
TRANSFER_MAGIC = 0x5846_4552_4D45_5441
_TRANSFER = struct.Struct("<QQ")
_POOL_METADATA = struct.Struct("<IB3x")
METADATA_BYTES = TRANSFER_METADATA_SIZE + POOL_METADATA_SIZE


class ModelMisuse(ValueError):
    """A model operation called in a state where the machine's preconditions forbid it."""


# --------------------------------------------------------------------- creation


@dataclass(frozen=True)
class CreationPlan:
    """What ``Pool(thread_count)`` does when the ``fail_at``-th arena creation fails.

    ``attempts``: creations tried (each is one reserve call); ``created``: those that
    succeeded; ``released``: indices of created arenas freed during construction, in order;
    ``kept``: arenas in the new pool (0 when construction fails).
    """

    behaviour: str
    thread_count: int
    fail_at: int | None
    attempts: int
    created: int
    kept: int
    released: tuple[int, ...]

    @property
    def fails(self) -> bool:
        return self.kept == 0


def plan_creation(behaviour: str, thread_count: int, fail_at: int | None) -> CreationPlan:
    """docs/ARENA.md 5 "Pool(thread_count)" on both behaviours.

    POSIX: exactly ``thread_count`` arenas; any failure frees what was created (last first)
    and fails. Windows: create while creation succeeds, up to ``thread_count + 1``; none is
    an error, one is kept, two or more lose the last one.
    """
    if behaviour not in BEHAVIOURS:
        raise ModelMisuse(f"unknown pool behaviour {behaviour!r}")
    if thread_count < 1:
        raise ModelMisuse(f"thread_count must be at least 1, got {thread_count}")
    if fail_at is not None and fail_at < 1:
        raise ModelMisuse(f"fail_at counts creations from 1, got {fail_at}")
    limit = thread_count if behaviour == POSIX else thread_count + 1
    fails_within = fail_at is not None and fail_at <= limit
    created = fail_at - 1 if fail_at is not None and fails_within else limit
    attempts = created + 1 if fails_within else limit
    if behaviour == POSIX:
        if fails_within:
            released = tuple(reversed(range(created)))
            return CreationPlan(behaviour, thread_count, fail_at, attempts, created, 0, released)
        return CreationPlan(behaviour, thread_count, fail_at, attempts, created, created, ())
    if created <= 1:
        return CreationPlan(behaviour, thread_count, fail_at, attempts, created, created, ())
    return CreationPlan(
        behaviour, thread_count, fail_at, attempts, created, created - 1, (created - 1,)
    )


# -------------------------------------------------------------------- ownership


class Owner(enum.Enum):
    POOL = "pool"  # the pool side: whoever holds the arena, or the pool itself
    ENGINE = "engine"  # the second party the buffer was shared with


class ReleaseOutcome(enum.Enum):
    KEPT = "kept"  # the other owner still holds it: no OS call
    FREED = "freed"  # the last owner let go: exactly one release call
    REFUSED = "refused"  # this owner does not own it (any more): typed error, no OS call


class ShareOutcome(enum.Enum):
    SHARED = "shared"
    ALREADY_SHARED = "already-shared"
    DEAD = "dead"


@dataclass
class Ownership:
    """The swap protocol of docs/ARENA.md 5 for one arena's memory.

    Invariant: ``memory_alive == (pool_owns or engine_owns)`` and, while alive,
    ``flag == (pool_owns and engine_owns)``; ``memory_releases`` is 1 once dead, else 0.
    """

    pool_owns: bool = True
    engine_owns: bool = False
    flag: bool = False
    memory_alive: bool = True
    memory_releases: int = 0

    def share(self) -> ShareOutcome:
        if not self.memory_alive:
            return ShareOutcome.DEAD
        if self.engine_owns:
            return ShareOutcome.ALREADY_SHARED
        self.engine_owns = True
        self.flag = True
        return ShareOutcome.SHARED

    def owns(self, owner: Owner) -> bool:
        return self.pool_owns if owner is Owner.POOL else self.engine_owns

    def release(self, owner: Owner) -> ReleaseOutcome:
        """The owner's free function: swap the flag to False; free only if it was False."""
        if not self.memory_alive or not self.owns(owner):
            return ReleaseOutcome.REFUSED
        if owner is Owner.POOL:
            self.pool_owns = False
        else:
            self.engine_owns = False
        was_double_owned, self.flag = self.flag, False
        if was_double_owned:
            return ReleaseOutcome.KEPT
        self.memory_alive = False
        self.memory_releases += 1
        return ReleaseOutcome.FREED

    def violations(self) -> list[str]:
        out: list[str] = []
        if self.memory_alive != (self.pool_owns or self.engine_owns):
            out.append("memory is alive without an owner, or dead with one")
        if self.memory_alive and self.flag != (self.pool_owns and self.engine_owns):
            out.append("is_double_owned does not say whether both owners hold the memory")
        if self.memory_releases != (0 if self.memory_alive else 1):
            out.append(f"memory released {self.memory_releases} times")
        return out


# ------------------------------------------------------------------------- pool


class GetOutcome(enum.Enum):
    GOT = "got"
    EMPTY = "empty"  # POSIX: the typed error
    WAIT = "wait"  # Windows: the thread blocks until an arena comes back
    CLOSED = "closed"


@dataclass(frozen=True)
class GetResult:
    outcome: GetOutcome
    arena: int | None = None


def metadata_image(arena_id: int, double_owned: bool, data_offset: int) -> bytes:
    """The bytes at ``[C + ACTIVE_SIZE, C + BUFFER_SIZE + 8)``: transfer, then pool metadata."""
    transfer = _TRANSFER.pack(data_offset, TRANSFER_MAGIC)
    return transfer + _POOL_METADATA.pack(arena_id, int(double_owned))


def metadata_range(geometry: Geometry, container: int) -> tuple[int, int]:
    """Where a pool arena's metadata lies: ``[C + ACTIVE_SIZE, C + BUFFER_SIZE + 8)``."""
    return container + geometry.active_size, container + geometry.buffer_size + POOL_METADATA_SIZE


@dataclass
class PoolModel:
    """The pool's contents, its waiting threads, and the ownership of every arena."""

    behaviour: str
    thread_count: int
    arenas: dict[int, ArenaModel]
    stack: list[int]
    holders: dict[str, int] = field(default_factory=dict)
    waiting: list[str] = field(default_factory=list)
    retired: list[int] = field(default_factory=list)
    ownership: dict[int, Ownership] = field(default_factory=dict)
    data_offsets: dict[int, int] = field(default_factory=dict)
    ever_shared: set[int] = field(default_factory=set)
    closed: bool = False

    @classmethod
    def after_creation(
        cls,
        plan: CreationPlan,
        geometry: Geometry,
        reservations: list[int],
        min_align: int = 1,
    ) -> PoolModel:
        """The pool right after a successful construction; ``reservations[i]`` is arena i's R."""
        if plan.fails:
            raise ModelMisuse("the plan says construction fails: there is no pool")
        if len(reservations) != plan.kept:
            raise ModelMisuse(f"{plan.kept} arenas kept, {len(reservations)} reservations given")
        arenas = {
            i: ArenaModel(geometry, r, min_align, pool=True) for i, r in enumerate(reservations)
        }
        return cls(
            behaviour=plan.behaviour,
            thread_count=plan.thread_count,
            arenas=arenas,
            stack=list(range(plan.kept)),
            ownership={i: Ownership() for i in arenas},
            data_offsets={i: geometry.active_size for i in arenas},
        )

    # -------------------------------------------------------------- queries

    def thread_state(self, thread: str) -> str:
        if thread in self.holders:
            return "holding"
        if thread in self.waiting:
            return "waiting"
        return "idle"

    def memory_alive(self, arena_id: int) -> bool:
        return self.ownership[arena_id].memory_alive

    def metadata(self, arena_id: int) -> bytes:
        own = self.ownership[arena_id]
        return metadata_image(arena_id, own.flag, self.data_offsets[arena_id])

    def key(self) -> tuple[object, ...]:
        """Everything that decides future results, as a hashable value."""
        owners = tuple(
            (i, o.pool_owns, o.engine_owns, o.flag) for i, o in sorted(self.ownership.items())
        )
        return (
            tuple(self.stack),
            tuple(sorted(self.holders.items())),
            tuple(self.waiting),
            tuple(self.retired),
            owners,
            self.closed,
        )

    # ----------------------------------------------------------- operations

    def get(self, thread: str) -> GetResult:
        """docs/ARENA.md 5 "get": pop the top; when empty, POSIX fails and Windows waits."""
        if self.thread_state(thread) != "idle":
            raise ModelMisuse(f"{thread} is {self.thread_state(thread)}, not idle")
        if self.closed:
            return GetResult(GetOutcome.CLOSED)
        if self.stack:
            arena_id = self.stack.pop()
            self.holders[thread] = arena_id
            return GetResult(GetOutcome.GOT, arena_id)
        if self.behaviour == POSIX:
            return GetResult(GetOutcome.EMPTY)
        self.waiting.append(thread)
        return GetResult(GetOutcome.WAIT)

    def add(self, thread: str) -> int:
        """docs/ARENA.md 5 "add": reset the cursor to C + ACTIVE_SIZE and push; returns the id.

        A waiter must then be served (``must_serve``); which one the model leaves open.
        """
        if thread not in self.holders:
            raise ModelMisuse(f"{thread} holds no arena")
        arena_id = self.holders.pop(thread)
        self.arenas[arena_id].reset()
        self.stack.append(arena_id)
        return arena_id

    @property
    def must_serve(self) -> bool:
        return bool(self.waiting and self.stack)

    def serve(self, thread: str) -> int:
        """A waiting thread wakes up and takes the top arena."""
        if thread not in self.waiting or not self.stack:
            raise ModelMisuse(f"{thread} cannot be served: waiting {self.waiting}, {self.stack}")
        self.waiting.remove(thread)
        arena_id = self.stack.pop()
        self.holders[thread] = arena_id
        return arena_id

    def share(self, thread: str) -> ShareOutcome:
        """The holder hands its arena's buffer to the engine: ``is_double_owned = True``."""
        arena_id = self.holders[thread]
        outcome = self.ownership[arena_id].share()
        if outcome is ShareOutcome.SHARED:
            model = self.arenas[arena_id]
            self.data_offsets[arena_id] = model.cursor - model.container
            self.ever_shared.add(arena_id)
        return outcome

    def retire(self, thread: str) -> ReleaseOutcome:
        """The holder lets go of its arena instead of returning it: the pool side's release."""
        arena_id = self.holders.pop(thread)
        self.retired.append(arena_id)
        outcome = self.ownership[arena_id].release(Owner.POOL)
        if outcome is ReleaseOutcome.FREED:
            self.arenas[arena_id].free()
        return outcome

    def release_again(self, arena_id: int, owner: Owner) -> ReleaseOutcome:
        """A release by an owner that may no longer own the arena."""
        outcome = self.ownership[arena_id].release(owner)
        if outcome is ReleaseOutcome.FREED:
            self.arenas[arena_id].free()
        return outcome

    def engine_release(self, arena_id: int) -> ReleaseOutcome:
        """The engine's free function (in oxc, the JavaScript buffer's finaliser)."""
        return self.release_again(arena_id, Owner.ENGINE)

    def close(self) -> tuple[list[tuple[int, ReleaseOutcome]], list[str]]:
        """Drop the pool: its arenas' pool-side owner lets go (top first); waiters are woken."""
        released: list[tuple[int, ReleaseOutcome]] = []
        while self.stack:
            arena_id = self.stack.pop()
            self.retired.append(arena_id)
            released.append((arena_id, self.release_again(arena_id, Owner.POOL)))
        woken, self.waiting = self.waiting, []
        self.closed = True
        return released, woken

    # ----------------------------------------------------------- invariants

    def violations(self) -> list[str]:
        out: list[str] = []
        held = list(self.holders.values())
        if len(set(held)) != len(held):
            out.append(f"an arena is held by two threads: {self.holders}")
        places = self.stack + held + self.retired
        if sorted(places) != sorted(self.arenas):
            out.append(
                f"pool {self.stack} + held {held} + retired {self.retired} "
                f"is not the {len(self.arenas)} arenas kept"
            )
        if self.waiting and self.behaviour == POSIX:
            out.append("a thread waits in the POSIX behaviour")
        if self.waiting and self.stack:
            out.append(f"threads {self.waiting} wait while the pool holds {self.stack}")
        if set(self.waiting) & set(self.holders):
            out.append("a thread both waits and holds an arena")
        for arena_id, own in self.ownership.items():
            out.extend(f"arena{arena_id}: {problem}" for problem in own.violations())
            if arena_id not in self.retired and not own.pool_owns:
                out.append(f"arena{arena_id} circulates although its pool side let go")
        return out
