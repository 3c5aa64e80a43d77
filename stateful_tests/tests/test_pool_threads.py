"""The pool under real OS threads: a bounded stress run, linearizable small histories, and
shared ownership released exactly once under a real race.

No test here can hang the run: every thread runs under the watchdog of
``arenacheck.machines.threads``, which reports a deadlock or a stall with every thread's
stack instead of waiting for it.
"""

from __future__ import annotations

import itertools
import random
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest
from arenacheck.backends.recording import RecordingBackend
from arenacheck.faults.broken_pools import LostWakeup
from arenacheck.faults.injector import FaultInjector, creation_fault
from arenacheck.impl.backend import Backend
from arenacheck.impl.pool import ArenaPool, Behaviour, PoolArena, Release
from arenacheck.machines.linearizability import Op, linearize, plan_thread, run_history
from arenacheck.machines.oracle import confirm_committed, expect_view
from arenacheck.machines.pool_sync import RecordingCondition, thread_stacks
from arenacheck.machines.threads import (
    JITTER_SECONDS,
    WATCHDOG_SECONDS,
    Deadlock,
    ThreadRun,
    thread_safe_backend,
)
from arenacheck.model.arena import ArenaModel, OsOp
from arenacheck.model.geometry import Geometry
from arenacheck.model.pool import (
    POSIX,
    WINDOWS,
    PoolModel,
    metadata_image,
    metadata_range,
    plan_creation,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

# ----------------------------------------------------------------- stress run

STRESS_WORKERS = 4
STRESS_SECONDS = 1.0
MAX_SESSIONS = 500
SIZES = (0, 1, 7, 64, 100, 4096, 5000, 20000)
ALIGNS = (1, 8, 16, 4096)


@dataclass
class Session:
    """One get ... add of one arena by one worker; tickets order events across threads."""

    worker: int
    arena: int
    get_invoked: int
    get_returned: int
    writes: list[tuple[int, bytes]] = field(default_factory=list)
    add_invoked: int = 0
    add_returned: int = 0


def stamp(worker: int, session: int, index: int, n: int) -> bytes:
    """Bytes no other write in the run produces."""
    seed = (worker * 1_000_003 + session * 1009 + index) & 0xFFFFFFFF
    return bytes((seed >> (8 * (i % 4)) ^ i) & 0xFF for i in range(n))


def pool_for_threads(
    backend: Backend, geometry: Geometry, behaviour: Behaviour, cond: RecordingCondition
) -> tuple[ArenaPool, int]:
    """POSIX: one arena per worker. Windows: creation fails at the fourth arena, leaving 2
    arenas for 4 workers, so threads really wait."""
    if behaviour == POSIX:
        pool = ArenaPool(backend, geometry, STRESS_WORKERS, POSIX, condition=cond)
        return pool, plan_creation(POSIX, STRESS_WORKERS, None).kept
    injector = FaultInjector(backend)
    injector.arm(creation_fault(backend, 4))
    pool = ArenaPool(injector, geometry, STRESS_WORKERS, WINDOWS, condition=cond)
    injector.disarm()
    return pool, plan_creation(WINDOWS, STRESS_WORKERS, 4).kept


@pytest.fixture
def backend(backend_name: str) -> Iterator[Backend]:
    b = thread_safe_backend(backend_name)
    yield b
    b.close()


@pytest.mark.parametrize("behaviour", [POSIX, WINDOWS])
def test_stress(backend: Backend, behaviour: Behaviour) -> None:
    """Workers get, allocate, write, sleep, verify and add for a fixed time; afterwards the
    pool, the arenas and every written byte are what the model predicts."""
    geometry = Geometry.small(backend.page, backend.granularity)
    cond = RecordingCondition(jitter=JITTER_SECONDS, seed=len(behaviour))
    pool, kept = pool_for_threads(backend, geometry, behaviour, cond)
    assert pool.contents() == list(range(kept))
    # Each arena's model is used only by the thread holding the arena, as the arena is.
    models = {a.id: ArenaModel(geometry, a.arena.reservation, pool=True) for a in pool.arenas()}
    ticket = itertools.count().__next__  # atomic under the GIL: a global event order
    sessions: list[Session] = []
    last: dict[int, list[tuple[int, bytes]]] = {}
    deadline = time.monotonic() + STRESS_SECONDS

    def worker(i: int) -> Callable[[], None]:
        rng = random.Random(1000 + i)

        def run() -> None:
            for n in range(MAX_SESSIONS):
                if time.monotonic() >= deadline:
                    return
                invoked = ticket()
                arena = pool.get()
                s = Session(i, arena.id, invoked, ticket())
                m = models[arena.id]
                for j in range(rng.randint(1, 4)):
                    size, align = rng.choice(SIZES), rng.choice(ALIGNS)
                    addr = arena.try_alloc(size, align)
                    want = m.apply_alloc(m.plan_alloc(size, align), size)
                    assert addr == want, f"arena{arena.id}: alloc({size}, {align}) gave {addr}"
                    if addr is not None and size:
                        confirm_committed(backend, f"arena{arena.id}", m, addr, addr + size)
                        data = stamp(i, n, j, size)
                        arena.write(addr, data)
                        s.writes.append((addr, data))
                    if rng.random() < 0.5:
                        time.sleep(rng.random() * 0.0005)
                for addr, data in s.writes:
                    got = arena.read(addr, len(data))
                    assert got == data, f"worker {i}: arena{arena.id} bytes at {addr:#x} changed"
                last[arena.id] = s.writes
                m.reset()
                s.add_invoked = ticket()
                pool.add(arena)
                s.add_returned = ticket()
                sessions.append(s)
                time.sleep(rng.random() * 0.0005)

        return run

    try:
        ThreadRun(pool, cond, [worker(i) for i in range(STRESS_WORKERS)]).join()
        check_stress_outcome(pool, backend, models, kept, sessions, last)
    finally:
        pool.close()
    assert all(not a.alive for a in pool.arenas()), "close left memory reserved"


def check_stress_outcome(
    pool: ArenaPool,
    backend: Backend,
    models: dict[int, ArenaModel],
    kept: int,
    sessions: list[Session],
    last: dict[int, list[tuple[int, bytes]]],
) -> None:
    assert sessions, "no worker completed a session"
    contents = pool.contents()
    assert sorted(contents) == list(range(kept)), f"pool holds {contents} after the run"
    assert not pool.handed_out() and not pool.retired()
    by_arena: dict[int, list[Session]] = {}
    for s in sorted(sessions, key=lambda s: s.get_returned):
        by_arena.setdefault(s.arena, []).append(s)
    # No arena held by two threads: each session's add began before the next get returned.
    for arena_id, runs in by_arena.items():
        for before, after in itertools.pairwise(runs):
            assert before.add_invoked < after.get_returned, (
                f"arena{arena_id} was handed to worker {after.worker} while worker "
                f"{before.worker} still held it"
            )
    # LIFO: an arena whose last add returned before another's last add began lies below it.
    last_add = {i: runs[-1] for i, runs in by_arena.items()}
    position = {arena_id: k for k, arena_id in enumerate(contents)}
    for a, b in itertools.permutations(last_add, 2):
        if last_add[a].add_returned < last_add[b].add_invoked:
            assert position[a] < position[b], (
                f"arena{a} was added before arena{b} but lies above it: {contents}"
            )
    for impl in pool.arenas():
        arena, model = impl.arena, models[impl.id]
        assert (arena.start, arena.cursor) == (model.start, model.cursor), f"arena{impl.id}: S, P"
        view = backend.query(model.reservation, model.reservation_end)
        expect_view(f"arena{impl.id}", view, model.expected_view(), model.container)
        lo, _ = metadata_range(model.geometry, model.container)
        want_meta = metadata_image(impl.id, False, model.geometry.active_size)
        assert backend.read(lo, len(want_meta)) == want_meta, f"arena{impl.id}: metadata"
        for addr, data in last.get(impl.id, []):
            assert backend.read(addr, len(data)) == data, f"arena{impl.id}: bytes lost"


# --------------------------------------------------------------- linearizable


THREADS = 3
OPS_PER_THREAD = 3


@pytest.mark.parametrize("behaviour", [POSIX, WINDOWS])
@settings(
    max_examples=25,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    programs=st.lists(
        st.lists(st.sampled_from(("get", "add")), min_size=OPS_PER_THREAD, max_size=OPS_PER_THREAD),
        min_size=THREADS,
        max_size=THREADS,
    ),
    arenas=st.integers(1, THREADS),
    pauses=st.lists(st.sampled_from((0, 0, 1, 5, 20)), min_size=1, max_size=8),
    seed=st.integers(0, 2**16),
)
def test_histories_are_linearizable(
    backend: Backend,
    behaviour: Behaviour,
    programs: list[list[str]],
    arenas: int,
    pauses: list[int],
    seed: int,
) -> None:
    """3 threads x 3 calls on a pool of 1 to 3 arenas: some sequential order of the model
    explains every result, respecting the order in which calls returned and began."""
    geometry = Geometry.small(backend.page, backend.granularity)
    cond = RecordingCondition(jitter=JITTER_SECONDS, seed=seed)
    # Windows: creation failing at arena k + 2 leaves k arenas.
    fail_at = None if behaviour == POSIX else arenas + 2
    injector = FaultInjector(backend)
    injector.arm(None if fail_at is None else creation_fault(backend, fail_at))
    pool = ArenaPool(injector, geometry, arenas, behaviour, condition=cond)
    injector.disarm()
    try:
        plan = plan_creation(behaviour, arenas, fail_at)
        model = PoolModel.after_creation(
            plan, geometry, [a.arena.reservation for a in pool.arenas()]
        )
        ops = run_history(pool, cond, [plan_thread(p, behaviour) for p in programs], pauses)
        order = linearize(ops, model)
        assert order is not None, f"no sequential order of the model explains {ops}"
    finally:
        pool.close()


def synthetic(*calls: tuple[int, str, int | None, int, int]) -> list[Op]:
    """Ops from (thread, kind, arena, invoked, returned); each thread holds one at a time."""
    return [Op(t, kind, f"t{t}", arena, inv, ret) for t, kind, arena, inv, ret in calls]


def two_arena_model(behaviour: str) -> PoolModel:
    g = Geometry.small()
    plan = plan_creation(behaviour, 2, None if behaviour == POSIX else 4)
    return PoolModel.after_creation(plan, g, [g.reserved_size * (i + 1) for i in range(2)])


def test_checker_accepts_overlapping_gets_in_either_order() -> None:
    # Both gets overlap, so either may have popped first.
    ops = synthetic((0, "get", 0, 0, 3), (1, "get", 1, 1, 2))
    assert linearize(ops, two_arena_model(POSIX)) is not None


def test_checker_rejects_one_arena_handed_out_twice() -> None:
    ops = synthetic((0, "get", 1, 0, 1), (1, "get", 1, 2, 3))
    assert linearize(ops, two_arena_model(POSIX)) is None


def test_checker_rejects_a_fifo_pool() -> None:
    # Arena 1 is on top; a get alone that returns arena 0 is not a stack's answer.
    ops = synthetic((0, "get", 0, 0, 1))
    assert linearize(ops, two_arena_model(WINDOWS)) is None


def test_checker_rejects_empty_while_an_arena_was_there() -> None:
    ops = synthetic((0, "get", 1, 0, 1), (1, "get", 0, 2, 3), (0, "add", 1, 4, 5))
    ops.append(Op(2, "get", "t2", None, 6, 7))
    assert linearize(ops, two_arena_model(POSIX)) is None


def test_checker_accepts_a_blocked_get_served_by_a_later_add() -> None:
    # Windows: t2's get began while the pool was empty and returned after t0's add.
    ops = synthetic((0, "get", 1, 0, 1), (1, "get", 0, 2, 3), (2, "get", 1, 4, 9))
    ops.append(Op(0, "add", "t0", 1, 5, 6))
    assert linearize(ops, two_arena_model(WINDOWS)) is not None


# ---------------------------------------------------------------- watchdog


@pytest.mark.parametrize("pool_class", [ArenaPool, LostWakeup], ids=["correct", "lost-wakeup"])
def test_two_waiters_and_two_adds(backend: Backend, pool_class: type[ArenaPool]) -> None:
    """Two threads wait on an empty Windows pool, each to borrow an arena and return it; the
    test returns one arena, then the other. The correct pool serves both waiters; the lost
    wake-up leaves the second blocked although arenas are back, and the run ends with a
    Deadlock carrying every thread's stack instead of hanging."""
    geometry = Geometry.small(backend.page, backend.granularity)
    cond = RecordingCondition()
    pool = pool_class(backend, geometry, 2, WINDOWS, condition=cond)
    try:
        held = [pool.get(), pool.get()]

        def borrow() -> None:
            pool.add(pool.get())

        run = ThreadRun(pool, cond, [borrow, borrow])
        assert cond.wait_for_state(lambda: cond.quiet(2), WATCHDOG_SECONDS), "threads not waiting"
        pool.add(held.pop())
        # The first waiter is served and returns its arena, which must wake the second
        # waiter; the lost wake-up leaves it blocked with an arena in the pool.
        settled = cond.wait_for_state(
            lambda: run.finished == 2 or (run.finished == 1 and cond.quiet(1)), WATCHDOG_SECONDS
        )
        assert settled, thread_stacks()
        pool.add(held.pop())
        if pool_class is ArenaPool:
            run.join()
            assert sorted(pool.contents()) == [0, 1]
        else:
            with pytest.raises(Deadlock) as caught:
                run.join()
            message = str(caught.value)
            assert "deadlock: 1 threads wait" in message, message
            assert "in borrow" in message and "in get" in message, message
    finally:
        pool.close()


# --------------------------------------------------------- shared ownership


def test_both_owners_racing_free_the_memory_once(backend_name: str) -> None:
    """The pool side and the engine let go at the same moment, on two OS threads, for each
    of 8 shared arenas: exactly one of them frees, with exactly one OS release."""
    recording = RecordingBackend(thread_safe_backend(backend_name))
    geometry = Geometry.small(recording.page, recording.granularity)
    pool = ArenaPool(recording, geometry, 8, POSIX)
    arenas = [pool.get() for _ in range(8)]
    for arena in arenas:
        arena.share()
    recording.take_log()
    gate = threading.Barrier(2)
    results: dict[str, list[Release]] = {"pool": [], "engine": []}

    def side(name: str, release: Callable[[PoolArena], Release]) -> Callable[[], None]:
        def run() -> None:
            for arena in arenas:
                gate.wait()
                results[name].append(release(arena))

        return run

    cond = RecordingCondition()
    try:
        ThreadRun(
            pool,
            cond,
            [side("pool", pool.retire), side("engine", lambda a: a.release_by_engine())],
        ).join()
    finally:
        pool.close()
    for k, arena in enumerate(arenas):
        outcomes = sorted(r.value for r in (results["pool"][k], results["engine"][k]))
        assert outcomes == ["freed", "kept"], f"arena{arena.id}: {outcomes}"
        assert not arena.alive
    releases = [
        e.call.addr
        for e in recording.take_log()
        if e.call.op is OsOp.RELEASE and e.call.addr is not None
    ]
    assert sorted(releases) == sorted(a.arena.reservation for a in arenas)
    assert not recording.release_leftovers()
