"""PoolMachine: oxc's arena pool beside its model, with logical threads as actors.

Each rule lets one logical thread (``t0``, ``t1``, ...) act, picked by Hypothesis from the
model's state: get an arena, allocate and write through it, share its buffer, return it,
or let go of it; the engine releases shared buffers. Interleavings are therefore explored
deterministically and shrink. In the Windows behaviour a ``get`` on an empty pool really
blocks: it runs on an OS thread, and the machine watches the pool's condition variable
(a :class:`RecordingCondition`) to see the thread wait, and to see it woken. A lost
wake-up is recognised at once, without timing: a thread waits, the pool holds an arena, and
no wake-up is pending. A watchdog turns anything else that hangs into a failure carrying
every thread's stack.

Checks after every step: the pool's contents, holders and waiters agree with the model; no
arena is held by two threads; pool + held + retired = created; the OS view, footer and
metadata of every arena whose memory is alive are what the model predicts; allocations
never reach the metadata; written bytes survive; every reservation is released exactly
once, and only after both owners let go.
"""

from __future__ import annotations

import queue
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from arenacheck.backends.recording import LoggedCall, RecordingBackend
from arenacheck.backends.registry import open_backend
from arenacheck.faults.injector import CREATIONS, creation_fault
from arenacheck.impl.errors import (
    ArenaFull,
    InvalidLayout,
    PoolClosed,
    PoolCreationFailed,
    PoolEmpty,
    PoolMisuse,
    ReleaseRefused,
    UseAfterFree,
)
from arenacheck.impl.pool import ArenaPool, PoolArena, Release
from arenacheck.machines import oracle
from arenacheck.machines.labels import label
from arenacheck.machines.oracle import (
    confirm_committed,
    describe,
    divergence_in_flight,
    expect,
    expect_bytes,
    expect_commit_charge,
    expect_layout,
    expect_view,
    fail,
    pattern,
    pattern_chunks,
)
from arenacheck.machines.pool_sync import RecordingCondition, thread_stacks
from arenacheck.machines.sizes import SizeSpec, aligns, sizes
from arenacheck.model.arena import MIN_ALIGNS, ArenaModel, OsCall, OsOp, Outcome
from arenacheck.model.geometry import Geometry, geometry_named
from arenacheck.model.pool import (
    METADATA_BYTES,
    POSIX,
    WINDOWS,
    CreationPlan,
    GetOutcome,
    GetResult,
    PoolModel,
    ReleaseOutcome,
    ShareOutcome,
    metadata_image,
    metadata_range,
    plan_creation,
)
from arenacheck.model.pool import Owner as ModelOwner
from arenacheck.model.spans import OsSpan, SpanState
from arenacheck.record.trace import traced
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

PoolFactory = Callable[..., ArenaPool]
MAX_THREADS = 4
# Only reached when something hangs; a correct pool answers in microseconds.
WATCHDOG_SECONDS = 20.0


@dataclass(eq=False)
class Written:
    """A live allocation and the chunks written into it, by offset."""

    addr: int
    size: int
    chunks: dict[int, bytes] = field(default_factory=dict)


def a_thread(state: str) -> st.SearchStrategy[str]:
    """A logical thread the model says is ``state`` (idle, holding, waiting)."""
    return st.runner().flatmap(lambda m: st.sampled_from(m.threads_in(state)))


def a_shared_arena() -> st.SearchStrategy[int]:
    return st.runner().flatmap(lambda m: st.sampled_from(m.shared_arenas()))


_RELEASES = {Release.KEPT: ReleaseOutcome.KEPT, Release.FREED: ReleaseOutcome.FREED}


class PoolMachine(RuleBasedStateMachine):
    """Configured by subclassing: ``backend_name``, ``geometry_name``, ``behaviour``."""

    backend_name: ClassVar[str] = "posix-native"
    geometry_name: ClassVar[str] = "small"
    behaviour: ClassVar[str] = POSIX
    pool_factory: ClassVar[staticmethod[..., ArenaPool]] = staticmethod(ArenaPool)

    def __init__(self) -> None:
        super().__init__()
        self.backend = RecordingBackend(open_backend(self.backend_name), keep_release_views=True)
        b = self.backend
        self.geometry: Geometry = geometry_named(self.geometry_name, b.page, b.granularity)
        self.cond = RecordingCondition()
        self._pool: ArenaPool | None = None
        self._model: PoolModel | None = None
        self.threads: list[str] = []
        self.held: dict[str, PoolArena] = {}
        self.handles: dict[int, PoolArena] = {}
        self.footers: dict[int, bytes] = {}
        self.allocs: dict[int, list[Written]] = {}
        self.waiters: dict[str, threading.Thread] = {}
        self.results: queue.Queue[tuple[str, PoolArena | BaseException]] = queue.Queue()
        self.releases: Counter[int] = Counter()

    # ---------------------------------------------------------------- helpers

    @property
    def pool(self) -> ArenaPool:
        assert self._pool is not None, "initialize did not create the pool"
        return self._pool

    @property
    def model(self) -> PoolModel:
        assert self._model is not None, "initialize did not create the pool"
        return self._model

    def threads_in(self, state: str) -> list[str]:
        if self._model is None:
            return []
        return [t for t in self.threads if self._model.thread_state(t) == state]

    def circulating(self) -> int:
        """Arenas in the pool or held: those a get can still obtain."""
        m = self._model
        return 0 if m is None else len(m.stack) + len(m.holders)

    def shared_arenas(self) -> list[int]:
        """Arenas ever shared: the engine's release of each is allowed once per share."""
        return [] if self._model is None else sorted(self._model.ever_shared)

    def expect_calls(self, what: str, predicted: list[OsCall], main_pool: bool = True) -> None:
        """The OS calls made are exactly the predicted ones. Releases are counted for the
        main pool's arenas only: a probe pool may be handed a base the OS took back from
        one of them, and no main-pool arena is created after the first step."""
        made = self.backend.take_log()
        if main_pool:
            self.count_releases(made)
        oracle.expect_calls(what, [entry.call for entry in made], predicted, self.geometry.page)

    def await_state(self, done: Callable[[], bool], what: str) -> None:
        if not self.cond.wait_for_state(done, WATCHDOG_SECONDS):
            fail(
                f"{what}: no progress within {WATCHDOG_SECONDS:.0f} s "
                f"(in wait {self.cond.in_wait}, wake-ups pending {self.cond.pending}); "
                f"every thread's stack:\n{thread_stacks()}"
            )

    def start_get(self, thread: str) -> None:
        """Run ``pool.get()`` on an OS thread; its outcome arrives on ``self.results``."""
        pool = self.pool

        def run() -> None:
            outcome: PoolArena | BaseException
            try:
                outcome = pool.get()
            except BaseException as e:  # handed to the machine to judge, whatever it is
                outcome = e
            self.results.put((thread, outcome))
            self.cond.poke()

        worker = threading.Thread(target=run, name=f"pool-get-{thread}", daemon=True)
        self.waiters[thread] = worker
        worker.start()

    def take_result(self) -> tuple[str, PoolArena | BaseException]:
        thread, outcome = self.results.get_nowait()
        worker = self.waiters.pop(thread, None)
        if worker is not None:
            worker.join(WATCHDOG_SECONDS)
        return thread, outcome

    def confirm_freed(self, what: str, model: ArenaModel) -> None:
        """docs/ARENA.md 6.6: right after the release the whole reservation was free."""
        view = self.backend.release_views.pop(model.reservation, None)
        expect(view is not None, f"{what}: the reservation was not released")
        assert view is not None
        expect(
            view == [OsSpan(model.reservation, model.reservation_end, SpanState.FREE)],
            f"{what}: after the release the OS still shows {describe(view, model.container)}",
        )

    def check_metadata(self, what: str, model: ArenaModel, want: bytes) -> None:
        lo, _ = metadata_range(self.geometry, model.container)
        got = self.backend.read(lo, METADATA_BYTES)
        expect(
            got == want,
            f"{what}: the metadata at C + ACTIVE_SIZE is {got.hex()}, model says {want.hex()} "
            "(transfer metadata, u32 id, is_double_owned)",
        )

    # ------------------------------------------------------------- creation

    def check_creation(
        self,
        what: str,
        plan: CreationPlan,
        pool: ArenaPool | None,
        reserved: list[int],
        main_pool: bool = True,
    ) -> list[ArenaModel]:
        """docs/ARENA.md 5 pool sizes, the exact OS calls, and the fresh arenas' memory."""
        g = self.geometry
        got = "an error" if pool is None else f"{len(pool.contents())} arenas"
        want = "an error" if plan.fails else f"{plan.kept} arenas"
        expect(
            got == want,
            f"{what}: {plan.behaviour} pool of {plan.thread_count} threads whose creation "
            f"{plan.fail_at} fails: model predicts {want}, got {got}",
        )
        expect(
            len(reserved) == plan.created,
            f"{what}: {len(reserved)} arenas created, model predicts {plan.created}",
        )
        predicted: list[OsCall] = []
        for base in reserved:
            predicted += ArenaModel.creation_calls(g, base)
        if plan.attempts > plan.created:
            predicted += ArenaModel.creation_calls(g, None)
        released = [ArenaModel(g, reserved[i], pool=True) for i in plan.released]
        predicted += [m.release_call() for m in released]
        self.expect_calls(what, predicted, main_pool)
        for m in released:
            self.confirm_freed(f"{what}: discarded arena", m)
        models = [ArenaModel(g, base, pool=True) for base in reserved[: plan.kept]]
        if pool is not None:
            expect(
                pool.contents() == list(range(plan.kept)),
                f"{what}: pool holds {pool.contents()}, model predicts {list(range(plan.kept))}",
            )
            for impl, m in zip(pool.arenas(), models, strict=True):
                expect(
                    impl.arena.reservation == m.reservation,
                    f"{what}: arena{impl.id} is not the reservation created for it",
                )
                view = self.backend.query(m.reservation, m.reservation_end)
                expect_view(f"{what}: arena{impl.id}", view, m.expected_view(), m.container)
                self.check_metadata(
                    f"{what}: arena{impl.id}", m, metadata_image(impl.id, False, g.active_size)
                )
        return models

    def create_pool(
        self, thread_count: int, fail_at: int | None, min_align: int, **kwargs: Any
    ) -> tuple[CreationPlan, ArenaPool | None, list[int]]:
        plan = plan_creation(self.behaviour, thread_count, fail_at)
        logged = len(self.backend.log)
        faults = self.backend.faults
        faults.arm(None if fail_at is None else creation_fault(self.backend, fail_at))
        try:
            pool: ArenaPool | None = self.pool_factory(
                self.backend,
                self.geometry,
                thread_count,
                self.behaviour,
                min_align=min_align,
                **kwargs,
            )
        except PoolCreationFailed:
            pool = None
        finally:
            faults.disarm()
        reserved = [
            e.result
            for e in self.backend.log[logged:]
            if e.call.op in CREATIONS and e.result is not None
        ]
        return plan, pool, reserved

    @initialize(
        probe=st.tuples(st.integers(1, MAX_THREADS), st.integers(1, MAX_THREADS + 2)),
        thread_count=st.integers(1, MAX_THREADS),
        min_align=st.sampled_from(MIN_ALIGNS),
        fail_at=st.none(),
    )
    @traced
    def new_pool(
        self, probe: tuple[int, int], thread_count: int, min_align: int, fail_at: int | None
    ) -> None:
        self.creation_failure(*probe)
        self.setup_pool(thread_count, min_align, fail_at)

    def setup_pool(self, thread_count: int, min_align: int, fail_at: int | None) -> None:
        plan, pool, reserved = self.create_pool(
            thread_count, fail_at, min_align, condition=self.cond
        )
        self._pool = pool
        if pool is not None:
            for impl in pool.arenas():
                self.handles[impl.id] = impl
        models = self.check_creation("new pool", plan, pool, reserved)
        expect(pool is not None, "new pool: the main pool must exist")
        assert pool is not None
        self._model = PoolModel.after_creation(
            plan, self.geometry, [m.reservation for m in models], min_align
        )
        self.threads = [f"t{i}" for i in range(thread_count)]
        for impl in pool.arenas():
            self.footers[impl.id] = self.backend.read(impl.arena.footer, 16)
            self.allocs[impl.id] = []
        label(f"pool: {plan.kept} arenas for {thread_count} threads")

    def creation_failure(self, thread_count: int, fail_at: int) -> None:
        """A probe pool whose ``fail_at``-th creation fails: the sizes of docs/ARENA.md 5, the
        exact OS calls, nothing leaked; then closed. Part of every initialisation, so that
        it costs the search no steps."""
        what = f"pool({thread_count}) with creation {fail_at} failing"
        plan, pool, reserved = self.create_pool(thread_count, fail_at, 1)
        models = self.check_creation(what, plan, pool, reserved, main_pool=False)
        if pool is None:
            label("creation failure: error")
            return
        label("creation failure: smaller pool" if plan.attempts > plan.created else "no failure")
        dropped = pool.close()
        order = [arena_id for arena_id, _ in dropped]
        expect(
            order == list(reversed(range(plan.kept))),
            f"{what}: close let go of {order}, top first expected",
        )
        expect(all(r is Release.FREED for _, r in dropped), f"{what}: close kept memory: {dropped}")
        self.expect_calls(
            f"{what}: close", [models[i].release_call() for i in order], main_pool=False
        )
        for m in models:
            self.confirm_freed(f"{what}: close", m)

    # ------------------------------------------------------------ get / add

    @precondition(lambda self: bool(self.threads_in("idle")))
    @rule(thread=a_thread("idle"))
    @traced
    def get(self, thread: str) -> None:
        self.get_for(thread)

    @precondition(lambda self: len(self.threads_in("idle")) >= 2)
    @rule()
    @traced
    def everyone_gets(self) -> None:
        """Every idle thread asks for an arena, in turn, as the linter's threads do when it
        starts: on a small Windows pool, several threads then wait at once."""
        for thread in self.threads_in("idle"):
            self.get_for(thread)

    def get_for(self, thread: str) -> None:
        predicted = self.model.get(thread)
        if self.behaviour == POSIX:
            outcome: PoolArena | BaseException
            try:
                outcome = self.pool.get()
            except PoolEmpty as e:
                outcome = e
            self.check_get(thread, predicted, outcome)
            return
        # Waiting or not, the new thread is the only one that can start to wait.
        in_wait = len(self.model.waiting) + (predicted.outcome is not GetOutcome.WAIT)
        self.start_get(thread)
        self.await_state(
            lambda: not self.results.empty() or self.cond.quiet(in_wait), f"get({thread})"
        )
        if self.results.empty():
            expect(
                predicted.outcome is GetOutcome.WAIT,
                f"get({thread}) waits although the pool holds {self.pool.contents()}",
            )
            label("get: waits")
            return
        name, outcome = self.take_result()
        expect(
            predicted.outcome is not GetOutcome.WAIT,
            f"get({thread}) on an empty pool returned {outcome!r} instead of waiting",
        )
        self.check_get(name, predicted, outcome)

    def check_get(self, thread: str, predicted: GetResult, outcome: object) -> None:
        self.expect_calls(f"get({thread})", [])
        if predicted.outcome is GetOutcome.EMPTY:
            expect(
                isinstance(outcome, PoolEmpty),
                f"get({thread}) on an empty pool: {outcome!r}, PoolEmpty expected",
            )
            label("get: empty")
            return
        expect(
            isinstance(outcome, PoolArena) and outcome.id == predicted.arena,
            f"get({thread}) returned {outcome!r}, model predicts arena{predicted.arena}",
        )
        assert isinstance(outcome, PoolArena)
        self.held[thread] = outcome
        label("get: arena")

    @precondition(lambda self: bool(self.threads_in("holding")))
    @rule(thread=a_thread("holding"))
    @traced
    def add(self, thread: str) -> None:
        arena = self.held.pop(thread)
        waiting = list(self.model.waiting)
        pushed = self.model.add(thread)
        expect(pushed == arena.id, f"{thread} holds arena{arena.id}, model says {pushed}")
        self.allocs[arena.id] = []
        self.pool.add(arena)
        self.expect_calls(f"add({thread})", [])
        m = self.model.arenas[arena.id]
        expect(
            arena.arena.cursor == m.cursor,
            f"add({thread}): arena{arena.id}'s cursor is C + {arena.arena.cursor - m.container:#x}"
            f", not C + ACTIVE_SIZE ({m.cursor - m.container:#x}): allocations from there "
            "would overwrite the metadata",
        )
        if waiting:
            self.await_service(arena.id, waiting)
            return
        # Nobody can take it now: a second add of the same arena must be refused.
        try:
            self.pool.add(arena)
        except PoolMisuse:
            pass
        else:
            fail(f"add({thread}): a second add of arena{arena.id} was not refused")
        self.expect_calls(f"add({thread}) again", [])
        label("add")

    def await_service(self, pushed: int, waiting: list[str]) -> None:
        """docs/ARENA.md 5: ``add`` wakes one waiter, which takes the arena just added."""
        self.await_state(
            lambda: not self.results.empty() or self.cond.quiet(len(waiting)),
            f"add(arena{pushed}) with {waiting} waiting",
        )
        if self.results.empty():
            fail(
                f"lost wake-up: arena{pushed} came back while {waiting} waited, and no waiter "
                f"was woken ({self.cond.in_wait} threads still wait, no wake-up pending)"
            )
        name, outcome = self.take_result()
        expect(name in waiting, f"{name} was served but was not waiting ({waiting})")
        expect(
            isinstance(outcome, PoolArena) and outcome.id == pushed,
            f"the woken waiter {name} got {outcome!r}, not arena{pushed}",
        )
        assert isinstance(outcome, PoolArena)
        served = self.model.serve(name)
        expect(served == outcome.id, f"{name} got arena{outcome.id}, model says {served}")
        self.held[name] = outcome
        label("add: wakes a waiter")

    @precondition(lambda self: bool(self.threads_in("waiting")))
    @rule()
    @traced
    def spurious_wakeup(self) -> None:
        """Wake every waiter for nothing: each must re-check, find the pool empty, and wait.

        One at a time, each back in ``wait`` before the next is woken: a woken waiter
        queues again at the end, so the queue comes back in its old order. Waking all at
        once would let the OS scheduler reorder the queue, and which thread a later ``add``
        serves (hence the model's state, hence the next step's choices) would vary between
        runs of the same program."""
        waiting = len(self.model.waiting)
        for _ in range(waiting):
            with self.cond:
                self.cond.notify()
            self.await_state(
                lambda: not self.results.empty() or self.cond.quiet(waiting), "spurious wake-up"
            )
            if not self.results.empty():
                name, outcome = self.take_result()
                fail(f"after a spurious wake-up on an empty pool, get({name}) gave {outcome!r}")
        label("spurious wake-up")

    # ----------------------------------------------------- allocate, write

    @precondition(lambda self: bool(self.threads_in("holding")))
    @rule(thread=a_thread("holding"), spec=sizes(), align=aligns(), seed=st.integers(0, 255))
    @traced
    def alloc(self, thread: str, spec: SizeSpec, align: int, seed: int) -> None:
        """Allocate through the held arena, then write a pattern into the new bytes."""
        arena = self.held[thread]
        m = self.model.arenas[arena.id]
        size = spec.resolve(m)
        plan = m.plan_alloc(size, align)
        try:
            addr = arena.try_alloc(size, align)
        except InvalidLayout:
            addr = None
        except ArenaFull:
            addr = None
        commit_failed = any(entry.error is not None for entry in self.backend.log)
        self.expect_calls(f"alloc({size}, {align})", [] if plan.commit is None else [plan.commit])
        if plan.outcome is not Outcome.OK or commit_failed:
            m.apply_alloc(plan, size, commit_succeeded=False)
            expect(addr is None, f"alloc({size}, {align}) must fail, returned {addr}")
            label("alloc: refused or full")
            return
        assert plan.address is not None
        if addr is not None:
            lo, _ = metadata_range(self.geometry, m.container)
            expect(
                addr + size <= lo,
                f"alloc({size}, {align}) at C + {addr - m.container:#x} reaches the metadata "
                f"at C + {lo - m.container:#x}: writing it would overwrite the metadata",
            )
        expect(
            addr == plan.address,
            f"alloc({size}, {align}) returned {addr if addr is None else hex(addr)}, "
            f"model predicts {plan.address:#x}",
        )
        m.apply_alloc(plan, size)
        written = Written(plan.address, size)
        chunks = pattern_chunks(size)
        if chunks:
            what = f"alloc({size}, {align})"
            confirm_committed(self.backend, what, m, written.addr, written.addr + size)
        for offset, n in chunks:
            data = pattern(seed + offset, n)
            arena.write(written.addr + offset, data)
            written.chunks[offset] = data
        self.allocs[arena.id].append(written)
        self.expect_calls("write", [])
        label("alloc: grow" if plan.grows else "alloc")

    # ------------------------------------------------------------ ownership

    @precondition(lambda self: bool(self.threads_in("holding")))
    @rule(thread=a_thread("holding"))
    @traced
    def share(self, thread: str) -> None:
        arena = self.held[thread]
        predicted = self.model.share(thread)
        try:
            arena.share()
            got = ShareOutcome.SHARED
        except PoolMisuse:
            got = ShareOutcome.ALREADY_SHARED
        except UseAfterFree:
            got = ShareOutcome.DEAD
        expect(got == predicted, f"share({thread}): {got.value}, model says {predicted.value}")
        self.expect_calls(f"share({thread})", [])
        label(f"share: {got.value}")

    def check_release(
        self, what: str, arena_id: int, predicted: ReleaseOutcome, release: Callable[[], Release]
    ) -> None:
        """One owner's release: exactly the model's outcome and OS calls; refusals touch
        nothing; a release while the other owner holds the memory is the bug to catch."""
        m = self.model.arenas[arena_id]
        try:
            got = _RELEASES[release()]
        except ReleaseRefused:
            got = ReleaseOutcome.REFUSED
        if predicted is not ReleaseOutcome.FREED and got is ReleaseOutcome.FREED:
            fail(
                f"{what}: arena{arena_id}'s memory was released although the other owner "
                "still holds it; its own release will free it a second time"
            )
        expect(got == predicted, f"{what}: {got.value}, model says {predicted.value}")
        self.expect_calls(what, [m.release_call()] if got is ReleaseOutcome.FREED else [])
        if got is ReleaseOutcome.FREED:
            self.confirm_freed(what, m)
            self.allocs[arena_id] = []
        label(f"release: {got.value}")

    @precondition(lambda self: bool(self.threads_in("holding")) and self.circulating() >= 2)
    @rule(thread=a_thread("holding"))
    @traced
    def retire(self, thread: str) -> None:
        """The holder lets go of its arena (the pool side's release). The last arena in
        circulation is never let go: every thread would then wait (or fail) for good, and
        the rest of the example would be spent there."""
        arena = self.held.pop(thread)
        predicted = self.model.retire(thread)
        self.allocs[arena.id] = []
        self.check_release(
            f"retire({thread})", arena.id, predicted, lambda: self.pool.retire(arena)
        )
        # The pool side's second release: refused, no OS call, whatever the engine does.
        again = self.model.release_again(arena.id, ModelOwner.POOL)
        self.check_release(
            f"retire({thread}) again", arena.id, again, lambda: self.pool.retire(arena)
        )

    @precondition(lambda self: bool(self.shared_arenas()))
    @rule(arena=a_shared_arena())
    @traced
    def engine_release(self, arena: int) -> None:
        """The engine lets go of a shared buffer; a second time is refused."""
        predicted = self.model.engine_release(arena)
        handle = self.handles[arena]
        self.check_release(
            f"engine_release(arena{arena})", arena, predicted, handle.release_by_engine
        )

    # ------------------------------------------------------------ invariants

    @invariant()
    def pool_agrees_with_model(self) -> None:
        if self._model is None:
            return
        m = self.model
        for problem in m.violations():
            fail(f"model: {problem}")
        contents, out, retired = self.pool.contents(), self.pool.handed_out(), self.pool.retired()
        expect(contents == m.stack, f"pool holds {contents}, model says {m.stack}")
        held_ids = [a.id for a in self.held.values()]
        expect(
            len(set(held_ids)) == len(held_ids),
            f"an arena is held by two threads: { {t: a.id for t, a in self.held.items()} }",
        )
        expect(
            {t: a.id for t, a in self.held.items()} == m.holders,
            f"threads hold { {t: a.id for t, a in self.held.items()} }, model says {m.holders}",
        )
        expect(out == set(held_ids), f"pool has {sorted(out)} handed out, held {held_ids}")
        expect(retired == set(m.retired), f"pool retired {retired}, model {m.retired}")
        expect(
            len(contents) + len(out) + len(retired) == len(self.handles)
            and not (set(contents) & out or set(contents) & retired or out & retired),
            f"an arena is lost: pool {contents} + held {sorted(out)} + retired "
            f"{sorted(retired)} is not the {len(self.handles)} created",
        )

        def waiters_settled() -> bool:
            return self.cond.quiet(len(m.waiting))

        with self.cond:
            expect(
                waiters_settled(),
                f"{self.cond.in_wait} threads wait ({self.cond.pending} wake-ups pending), "
                f"model says {m.waiting}",
            )
        expect(self.results.empty(), "a get returned that the machine did not expect")

    @invariant()
    def arenas_agree_with_model_and_os(self) -> None:
        """R, C, S, P, F; the OS view; footer, metadata and written bytes in memory."""
        if self._model is None:
            return
        for arena_id, impl in self.handles.items():
            m = self.model.arenas[arena_id]
            alive = self.model.memory_alive(arena_id)
            expect(
                impl.alive == alive,
                f"arena{arena_id}: memory {'alive' if impl.alive else 'released'}, model says "
                f"{'alive' if alive else 'released'}",
            )
            if not alive:
                continue
            expect_layout(f"arena{arena_id}", impl.arena, m)
            # Memory is read only below here, once the OS shows the model's committed region.
            view = self.backend.query(m.reservation, m.reservation_end)
            expect_view(f"arena{arena_id}", view, m.expected_view(), m.container)
            footer = self.footers[arena_id]
            expect_bytes(self.backend, m.footer, footer, f"arena{arena_id}: footer overwritten")
            self.check_metadata(f"arena{arena_id}", m, self.model.metadata(arena_id))
            self.check_allocations(arena_id, m)

    def check_allocations(self, arena_id: int, m: ArenaModel) -> None:
        """docs/ARENA.md 6.3 and 6.9: live allocations end below C + ACTIVE_SIZE; bytes survive."""
        lo, _ = metadata_range(self.geometry, m.container)
        for w in self.allocs[arena_id]:
            expect(
                m.start <= w.addr and w.addr + w.size <= lo,
                f"arena{arena_id}: allocation at {w.addr:#x}+{w.size} is outside [S, "
                "C + ACTIVE_SIZE)",
            )
            for offset, data in w.chunks.items():
                at = w.addr + offset
                expect_bytes(
                    self.backend, at, data, f"arena{arena_id}: bytes at {at:#x} overwritten"
                )

    @invariant()
    def released_exactly_once(self) -> None:
        """Memory goes back to the OS once, and only after both owners let go."""
        if self._model is None:
            return
        for arena_id, impl in self.handles.items():
            count = self.releases[impl.arena.reservation]
            want = self.model.ownership[arena_id].memory_releases
            expect(
                count == want,
                f"arena{arena_id}: its reservation was released {count} times, model says {want}",
            )

    @invariant()
    def commit_charge_is_exact(self) -> None:
        if self._model is None:
            return
        live = [i for i in self.handles if self.model.memory_alive(i)]
        want = sum(self.model.arenas[i].committed_bytes for i in live)
        expect_commit_charge(self.backend.kernel32, want)

    # -------------------------------------------------------------- teardown

    def teardown(self) -> None:
        """Close the pool and let every owner go, each as the model predicts; in the end
        every reservation must have been released exactly once. After a failed step the
        same is done, but only leaks are reported: the step's failure is the news."""
        failed_step = divergence_in_flight()
        errors: list[str] = []
        try:
            if self._pool is not None and self._model is not None:
                self.let_everything_go(errors)
        except Exception as e:  # after a failed step the model may not match: keep going
            errors.append(f"letting go at teardown failed: {e!r}")
        finally:
            if self._pool is not None:
                self._pool.close()  # wakes any waiter the model did not know of
            for worker in self.waiters.values():
                worker.join(WATCHDOG_SECONDS)
        self.count_releases(self.backend.take_log())
        for arena_id, impl in self.handles.items():
            count = self.releases[impl.arena.reservation]
            if count != 1:
                errors.append(f"arena{arena_id} was released {count} times in all")
        leaked = self.backend.release_leftovers()
        if leaked and not self.backend.fence_tripped:
            errors.append("leaked reservations: " + ", ".join(f"{b:#x}+{n:#x}" for b, n in leaked))
        if errors and failed_step is None:
            fail("; ".join(errors))

    def let_everything_go(self, errors: list[str]) -> None:
        """Close (waiters wake with PoolClosed), then holders let go, then the engine."""
        m = self.model
        predicted, woken = m.close()
        got = [(arena_id, _RELEASES[r]) for arena_id, r in self.pool.close()]
        if got != predicted:
            errors.append(f"close let go of {got}, model predicts {predicted}")
        for thread in woken:
            worker = self.waiters.pop(thread)
            worker.join(WATCHDOG_SECONDS)
            if worker.is_alive():
                errors.append(f"{thread} still blocked after close:\n{thread_stacks()}")
        while not self.results.empty():
            thread, outcome = self.results.get_nowait()
            if not isinstance(outcome, PoolClosed):
                errors.append(f"{thread}'s get ended with {outcome!r}, PoolClosed expected")
        for thread, arena in list(self.held.items()):
            want = m.retire(thread)
            got_release = _RELEASES[self.pool.retire(arena)]
            if got_release is not want:
                errors.append(f"retire({thread}) at teardown: {got_release}, model {want}")
        for arena_id, own in m.ownership.items():
            if own.engine_owns:
                want = m.engine_release(arena_id)
                got_release = _RELEASES[self.handles[arena_id].release_by_engine()]
                if got_release is not want:
                    errors.append(f"engine release of arena{arena_id}: {got_release}, {want}")

    def count_releases(self, made: list[LoggedCall]) -> None:
        for entry in made:
            if entry.call.op is OsOp.RELEASE and entry.error is None:
                assert entry.call.addr is not None
                self.releases[entry.call.addr] += 1


def pool_machine_for(
    backend_name: str,
    geometry_name: str,
    behaviour: str,
    factory: PoolFactory | None = None,
) -> type[PoolMachine]:
    """A configured PoolMachine subclass (one per test, so each has its own database key)."""
    attrs: dict[str, object] = {
        "backend_name": backend_name,
        "geometry_name": geometry_name,
        "behaviour": behaviour,
    }
    if factory is not None:
        attrs["pool_factory"] = staticmethod(factory)
    if behaviour == WINDOWS:
        # Creation failing at the k-th arena leaves a Windows pool smaller than the thread
        # count, which is where threads wait.

        @initialize(
            probe=st.tuples(st.integers(1, MAX_THREADS), st.integers(1, MAX_THREADS + 2)),
            thread_count=st.integers(1, MAX_THREADS),
            min_align=st.sampled_from(MIN_ALIGNS),
            fail_at=st.one_of(st.none(), st.integers(2, MAX_THREADS + 1)),
        )
        @traced
        def new_pool(
            self: PoolMachine,
            probe: tuple[int, int],
            thread_count: int,
            min_align: int,
            fail_at: int | None,
        ) -> None:
            self.creation_failure(*probe)
            self.setup_pool(thread_count, min_align, fail_at)

        attrs["new_pool"] = new_pool
    name = f"PoolMachine_{backend_name}_{geometry_name}_{behaviour}".replace("-", "_")
    return type(name, (PoolMachine,), attrs)
