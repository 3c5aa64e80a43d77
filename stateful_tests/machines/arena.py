"""ArenaMachine: the arena implementation beside its model, on a real backend.

Every rule makes the call on the implementation and on the model, then compares result,
state and the exact OS calls made. After every step the invariants of docs/ARENA.md section 6
are checked, with "the OS agrees" read from the OS through the backend, never from the
implementation's own bookkeeping. Memory is only touched once both the model and the OS
confirm it is committed read-write, so a bug fails an assertion instead of a worker.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, cast

from arenacheck.backends.isolation import child_backend
from arenacheck.backends.recording import RecordingBackend
from arenacheck.backends.registry import WIN32_EMULATED, host_backend, open_backend
from arenacheck.backends.standin import EmulatedKernel32
from arenacheck.harness.plugins import (
    DEFAULT_IMPL,
    ArenaFactory,
    ArenaLike,
    load_factory,
    makes_os_calls_itself,
    reported_footer,
    runs_isolated_by_default,
)
from arenacheck.impl.arena import Arena
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
from arenacheck.impl.win_backend import WindowsBackend
from arenacheck.impl.win_kernel32 import Kernel32
from arenacheck.machines import oracle
from arenacheck.machines.labels import label
from arenacheck.machines.oracle import (
    confirm_committed,
    describe,
    expect,
    expect_bytes,
    expect_commit_charge,
    expect_layout,
    expect_view,
    fail,
    pattern,
    pattern_chunks,
)
from arenacheck.machines.sizes import BAD_LAYOUTS, SizeSpec, aligns, sizes
from arenacheck.model.arena import (
    MIN_ALIGNS,
    RESERVE_COMMIT,
    TIGHT,
    ArenaModel,
    OsCall,
    OsOp,
    Outcome,
)
from arenacheck.model.geometry import Geometry, geometry_named
from arenacheck.model.spans import OsSpan, SpanState
from arenacheck.record.picture import strips
from arenacheck.record.trace import traced
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    MultipleResults,
    RuleBasedStateMachine,
    consumes,
    invariant,
    multiple,
    precondition,
    rule,
)

MAX_LIVE_ARENAS = 3
_PLACES = ("below P", "at F", "across F", "null", "top", "str addr")
BAD_ACCESSES = tuple(("read", w) for w in (*_PLACES, "negative length", "float length")) + tuple(
    ("write", w) for w in (*_PLACES, "str data")
)

# Every one of these must fire in a campaign: a label that never fires marks a part of the
# arena the campaign never reached.
REQUIRED_LABELS = (
    "alloc: grow",
    "alloc: grow capped at the container",
    "alloc: full",
    "alloc: max",
    "alloc: max + 1 refused",
    "alloc: isize::MAX refused",
    "alloc: zero size",
    "alloc: invalid layout",
    "write",
    "reset",
    "reset after grow",
    "free",
    "double free",
    "use after free",
    "bad layout refused",
    "bad read refused",
    "bad write refused",
)


@dataclass(eq=False)
class ArenaHandle:
    """One arena as the machine tracks it: the implementation and its model side by side."""

    number: int
    impl: ArenaLike
    model: ArenaModel
    footer: bytes
    epoch: int = 0
    # Allocations made since the last reset, whose written bytes must survive.
    written: list[AllocHandle] = field(default_factory=list)

    @property
    def trace_name(self) -> str:
        return f"arena{self.number}"

    def __repr__(self) -> str:
        return self.trace_name


@dataclass(eq=False)
class AllocHandle:
    number: int
    arena: ArenaHandle
    addr: int
    size: int
    epoch: int
    chunks: dict[int, bytes] = field(default_factory=dict)

    @property
    def live(self) -> bool:
        return self.arena.model.alive and self.arena.epoch == self.epoch

    @property
    def trace_name(self) -> str:
        return f"alloc{self.number}"

    def __repr__(self) -> str:
        return self.trace_name


class ArenaMachine(RuleBasedStateMachine):
    """Configured by subclassing: ``backend_name``, ``geometry_name``, ``min_aligns``."""

    backend_name: ClassVar[str] = "posix-native"
    geometry_name: ClassVar[str] = "small"
    min_aligns: ClassVar[tuple[int, ...]] = MIN_ALIGNS
    arena_factory: ClassVar[staticmethod[[Backend, Geometry, int], ArenaLike]] = staticmethod(
        Arena.new
    )
    arena_impl: ClassVar[str | None] = None
    commit_limit: ClassVar[int | None] = None
    isolated: ClassVar[bool] = False
    # The implementation makes its OS calls itself, bypassing the backend: the calls are
    # then judged by what they did, the OS's view after every step.
    direct: ClassVar[bool] = False
    strategy: ClassVar[str] = RESERVE_COMMIT

    arenas = Bundle("arenas")
    dead = Bundle("dead_arenas")
    allocations = Bundle("allocations")

    def __init__(self) -> None:
        super().__init__()
        self.backend = self.open_recording_backend()
        # In a child process the kernel32 is the child's: none is reachable from here.
        self.kernel32: Kernel32 | None = None if self.isolated else self.backend.kernel32
        b = self.backend
        self.geometry = geometry_named(self.geometry_name, b.page, b.granularity)
        self.handles: list[ArenaHandle] = []
        # The handles whose model is alive, kept as arenas are created and freed: every
        # step asks for them several times.
        self._live: list[ArenaHandle] = []
        self._numbers = itertools.count()
        self._alloc_numbers = itertools.count()
        self.notes: list[str] = []
        # Notes cost a formatted string per step; only a replay asks for them.
        self.narrate = False

    def open_recording_backend(self) -> RecordingBackend:
        if self.isolated:
            # Duck-typed: the child's proxy offers what the machine reads of a recorder.
            return cast(RecordingBackend, child_backend(self.backend_name, self.commit_limit))
        if self.commit_limit is None:
            return RecordingBackend(open_backend(self.backend_name))
        # A commit limit exists only in the emulated kernel: the stand-in is built here with
        # it, instead of through the seam.
        if self.backend_name != WIN32_EMULATED:
            raise ValueError(f"a commit limit needs {WIN32_EMULATED}, not {self.backend_name}")
        k32 = EmulatedKernel32(commit_limit=self.commit_limit)
        return RecordingBackend(WindowsBackend(k32, WIN32_EMULATED))

    # ---------------------------------------------------------------- helpers

    def note(self, line: str) -> None:
        """What the model predicted and what happened, for a step-by-step replay."""
        self.notes.append(line)

    def pictures(self) -> list[str]:
        """Each arena's reservation, as the model expects it and as the OS shows it."""
        out = []
        for h in self.handles:
            m = h.model
            lo, hi = m.reservation, m.reservation_end
            model_view = m.expected_view() if m.alive else [OsSpan(lo, hi, SpanState.FREE)]
            labels = {"R": lo, "C": m.container, "S": m.start, "P": m.cursor, "F": m.footer}
            if h.model.alive:
                labels.update(impl_S=h.impl.start, impl_P=h.impl.cursor)
            rows = {"model": model_view, "OS": self.backend.query(lo, hi)}
            out.append(f"{h} ({'live' if m.alive else 'freed'}):\n" + strips(lo, hi, rows, labels))
        return out

    def live_arenas(self) -> list[ArenaHandle]:
        return list(self._live)

    def expect_calls(self, what: str, predicted: list[OsCall]) -> None:
        """docs/ARENA.md 6.2 and 6.8: the OS calls made are exactly the predicted ones.

        An implementation that makes its own calls must make none through the backend; what
        its own calls did is compared with the model through the OS's view after the step.
        """
        calls = [entry.call for entry in self.backend.take_log()]
        if self.direct:
            expect(
                not calls,
                f"{what}: an arena making its own OS calls made {[str(c) for c in calls]} "
                "through the backend",
                "expect_calls",
            )
            return
        oracle.expect_calls(what, calls, predicted, self.geometry.page)

    def check_unchanged(self, handle: ArenaHandle, before: tuple[int, int], what: str) -> None:
        impl = handle.impl
        expect(
            (impl.start, impl.cursor) == before,
            f"{handle}: {what} changed S/P from {before} to {(impl.start, impl.cursor)}",
        )

    # ------------------------------------------------------------------ rules

    @precondition(lambda self: len(self.live_arenas()) < MAX_LIVE_ARENAS)
    @rule(target=arenas, min_align=st.sampled_from(MIN_ALIGNS))
    @traced
    def new_arena(self, min_align: int) -> ArenaHandle | MultipleResults[ArenaHandle]:
        return self.create_arena(min_align)

    def emulated_commit(self) -> tuple[int, int] | None:
        """(bytes committed, limit) of an emulated kernel with a commit limit, else None."""
        k32 = self.kernel32
        if isinstance(k32, EmulatedKernel32) and k32.model.commit_limit is not None:
            return k32.model.committed_bytes, k32.model.commit_limit
        return None

    def create_arena(self, min_align: int) -> ArenaHandle | MultipleResults[ArenaHandle]:
        charge = self.emulated_commit()
        impl: ArenaLike
        try:
            if self.isolated:
                spec = self.arena_impl or DEFAULT_IMPL
                impl = cast(Any, self.backend).new_arena(spec, self.geometry_name, min_align)
            elif self.strategy != RESERVE_COMMIT:
                impl = self.arena_factory(  # type: ignore[call-arg]
                    self.backend, self.geometry, min_align, strategy=self.strategy
                )
            else:
                impl = self.arena_factory(self.backend, self.geometry, min_align)
        except OSCallFailed as error:
            return self.creation_failed(error, charge)
        model = ArenaModel(self.geometry, impl.reservation, min_align, strategy=self.strategy)
        # Tracked before any check, so that teardown frees it even when a check fails.
        handle = ArenaHandle(next(self._numbers), impl, model, b"")
        self.handles.append(handle)
        self._live.append(handle)
        if self.narrate:
            self.note(
                f"model: R from the OS, C={model.container:#x} S={model.start:#x} "
                f"P={model.cursor:#x}"
            )
            self.note(f"OS calls: {[str(c) for c in self.backend.calls()]}")
        self.expect_calls("new", self.predicted_creation(impl.reservation))
        confirm_committed(self.backend, "new: the footer", model, model.footer, model.footer + 16)
        if self.direct:
            # Its reservation, as the OS shows it, so that the footer may be read and
            # teardown may give the reservation back.
            self.backend.adopt(model.reservation, model.reserved_size)
        # The rest of the new arena is checked by the invariant that follows this step.
        handle.footer = self.backend.read(model.footer, 16)
        self.check_footer_bytes(handle)
        expect(impl.alive, f"new: {handle} says it is not alive")
        return handle

    def predicted_creation(self, reservation: int) -> list[OsCall]:
        """The calls ``new`` must have made, given the log's first reservation."""
        g = self.geometry
        first = self.backend.log[0] if self.backend.log else None
        if self.strategy != TIGHT or first is None or first.result is None:
            return ArenaModel.creation_calls(g, reservation)
        if first.call.size == g.container_size:  # one aligned reservation (VirtualAlloc2)
            return [
                first.call,
                OsCall(
                    OsOp.COMMIT, reservation + g.container_size - g.first_commit, g.first_commit
                ),
            ]
        if any(e.call.op is OsOp.RESERVE_AT and e.error is not None for e in self.backend.log):
            # Another allocation took C between release and re-reserve: a retry, not a bug.
            label("tight: the container was taken, reserved again")
            return [e.call for e in self.backend.log]
        return ArenaModel.creation_calls(g, first.result, TIGHT, self.backend.partial_release)

    def creation_failed(
        self, error: OSCallFailed, charge: tuple[int, int] | None
    ) -> MultipleResults[ArenaHandle]:
        """Creation may fail only where the OS refused a call: then nothing may stay reserved."""
        log = self.backend.take_log()
        failed = next((e for e in log if e.error is not None), None)
        expect(failed is not None, f"new raised {error!r} with no failed OS call")
        assert failed is not None
        if not failed.injected:
            expect(
                failed.call.op is OsOp.COMMIT
                and charge is not None
                and charge[0] + self.geometry.first_commit > charge[1],
                f"new failed ({error}) although the OS had room for the first commit",
            )
        got = [entry.call for entry in log]
        if failed.call.op is OsOp.RESERVE:
            want = [failed.call]
        else:
            reserve = log[0]
            expect(reserve.result is not None, f"new failed before reserving: {error}")
            assert reserve.result is not None
            held = ArenaModel(self.geometry, reserve.result)
            if self.strategy == TIGHT:
                held = ArenaModel(self.geometry, held.container, strategy=TIGHT)
            calls = ArenaModel.creation_calls(
                self.geometry, reserve.result, self.strategy, self.backend.partial_release
            )
            want = [*calls, held.release_call()]
        expect(
            got == want,
            f"new after a refused {failed.call.op.value}: OS calls {[str(c) for c in got]}, "
            f"model predicts {[str(c) for c in want]}",
        )
        live = {h.model.reservation for h in self.live_arenas()}
        expect(
            set(self.backend.live) <= live,
            f"new failed and left {sorted(self.backend.live)} reserved",
        )
        label(f"new: {failed.call.op.value} refused, nothing left reserved")
        return multiple()

    def check_footer_bytes(self, handle: ArenaHandle) -> None:
        """The footer's content is the implementation's choice: what it reports having
        written at F (``footer_bytes()``, where it reports it) is what memory holds."""
        report = reported_footer(handle.impl)
        if report is None:
            return
        if not isinstance(report, bytes):
            fail(f"new: {handle}'s footer_bytes() returned {type(report).__name__}, not bytes")
        if report != handle.footer:
            fail(
                f"new: {handle} reports the footer {report.hex()}, memory at F holds "
                f"{handle.footer.hex()}"
            )

    def check_full_signal(self, call: str, fallible: bool, raised: bool) -> None:
        """A full arena answers ``try_alloc`` with None and ``alloc`` with ArenaFull."""
        if fallible and raised:
            fail(f"try_alloc{call} raised ArenaFull; a full arena's try_alloc returns None")
        if not fallible and not raised:
            fail(f"alloc{call} returned None; a full arena's alloc raises ArenaFull")

    @rule(
        target=allocations,
        arena=arenas,
        spec=sizes(),
        align=aligns(),
        fallible=st.booleans(),
    )
    @traced
    def alloc(
        self, arena: ArenaHandle, spec: SizeSpec, align: int, fallible: bool
    ) -> AllocHandle | MultipleResults[AllocHandle]:
        size = spec.resolve(arena.model)
        plan = arena.model.plan_alloc(size, align)
        before = (arena.impl.start, arena.impl.cursor)
        charge = self.emulated_commit()
        try:
            addr = arena.impl.try_alloc(size, align) if fallible else arena.impl.alloc(size, align)
        except InvalidLayout:
            addr, raised = None, "invalid-layout"
        except ArenaFull:
            addr, raised, full_raised = None, "full", True
        else:
            raised, full_raised = "full" if addr is None else "", False
        log = list(self.backend.log)
        commit_failed = any(entry.error is not None for entry in log)
        if self.narrate:
            self.note(
                f"model: {plan.outcome.value}"
                + (f" at {plan.address:#x}" if plan.address is not None else "")
                + (f", grow with {plan.commit}" if plan.commit else "")
            )
            shown = "raised " + raised if raised else hex(addr) if addr is not None else "None"
            self.note(f"impl: {shown}; OS calls: {[str(e.call) for e in log]}")
        predicted = [] if plan.commit is None else [plan.commit]
        self.expect_calls(f"alloc({size}, {align})", predicted)
        if plan.outcome is Outcome.INVALID_LAYOUT:
            expect(
                raised == "invalid-layout", f"alloc({size}, {align}): {plan.reason}, not refused"
            )
            self.check_unchanged(arena, before, "a refused alloc")
            label("alloc: invalid layout")
            return multiple()
        if charge is not None and plan.commit is not None:
            refused = charge[0] + plan.commit.size > charge[1]
            expect(
                refused == commit_failed,
                f"alloc({size}, {align}): the grow's commit was "
                f"{'refused' if commit_failed else 'granted'}; with {charge[0]} of {charge[1]} "
                f"bytes committed the kernel must {'refuse' if refused else 'grant'} it",
            )
        result = arena.model.apply_alloc(plan, size, commit_succeeded=not commit_failed)
        if result is None:
            expect(
                raised == "full",
                f"alloc({size}, {align}) must fail as full ({plan.reason or 'the OS refused'}), "
                f"returned {addr if addr is None else hex(addr)}",
            )
            self.check_full_signal(f"({size}, {align})", fallible, full_raised)
            self.check_unchanged(arena, before, "a failed alloc")
            label("alloc: full" if not commit_failed else "alloc: commit refused by the OS")
            if spec == SizeSpec("max", 1):
                label("alloc: max + 1 refused")
            if spec.kind == "isize":
                label("alloc: isize::MAX refused")
            return multiple()
        expect(
            addr == result,
            f"alloc({size}, {align}) returned {addr if addr is None else hex(addr)}, "
            f"model predicts {result:#x}",
        )
        a = max(align, arena.model.min_align)
        expect(result % a == 0, f"alloc({size}, {align}) at {result:#x} is not {a}-aligned")
        if plan.grows:
            capped = plan.new_start == arena.model.container
            label("alloc: grow capped at the container" if capped else "alloc: grow")
        if spec == SizeSpec("max", 0):
            label("alloc: max")
        if size == 0:
            label("alloc: zero size")
        handle = AllocHandle(next(self._alloc_numbers), arena, result, size, arena.epoch)
        arena.written.append(handle)
        return handle

    @rule(alloc=allocations, seed=st.integers(0, 255))
    @traced
    def write_pattern(self, alloc: AllocHandle, seed: int) -> None:
        if not alloc.live or alloc.size == 0:
            return
        for offset, n in pattern_chunks(alloc.size):
            data = pattern(seed + offset, n)
            lo = alloc.addr + offset
            confirm_committed(self.backend, str(alloc.arena), alloc.arena.model, lo, lo + n)
            alloc.arena.impl.write(alloc.addr + offset, data)
            alloc.chunks[offset] = data
            label("write")
        self.expect_calls("write", [])

    @rule(alloc=allocations)
    @traced
    def read_back(self, alloc: AllocHandle) -> None:
        """The implementation's own read returns what was written."""
        if not alloc.live:
            return
        for offset, data in alloc.chunks.items():
            lo = alloc.addr + offset
            confirm_committed(self.backend, str(alloc.arena), alloc.arena.model, lo, lo + len(data))
            got = alloc.arena.impl.read(lo, len(data))
            expect(got == data, f"{alloc}: read at +{offset} returned other bytes")

    @rule(arena=arenas)
    @traced
    def reset(self, arena: ArenaHandle) -> None:
        grown = arena.model.grows > 0
        arena.impl.reset()
        arena.model.reset()
        arena.epoch += 1
        arena.written = []
        self.expect_calls("reset", [])
        label("reset after grow" if grown else "reset")

    @rule(target=dead, arena=consumes(arenas))
    @traced
    def free(self, arena: ArenaHandle) -> ArenaHandle:
        layout = {(s.start, s.end) for s in arena.model.expected_view()}
        try:
            arena.impl.free()
        except OSCallFailed as error:
            self.release_refused(arena, error)
            arena.impl.free()
        call = arena.model.free()
        self._live.remove(arena)
        if self.direct:
            self.backend.disown(arena.model.reservation, arena.model.reserved_size)
        expect(not arena.impl.alive, f"{arena}: free returned but the arena says it is alive")
        if self.narrate:
            self.note(f"model: {call}; OS calls: {[str(c) for c in self.backend.calls()]}")
        self.expect_calls("free", [call])
        view = self.backend.query(arena.model.reservation, arena.model.reservation_end)
        # Another allocator of the process (a malloc arena, a thread's heap) may map into
        # the range the moment it is free. Its mappings do not fall on our spans'
        # boundaries; a span of ours still there does.
        left = [s for s in view if s.state is not SpanState.FREE and (s.start, s.end) in layout]
        expect(
            not left,
            f"{arena}: after free the OS still shows {describe(view, arena.model.container)}",
        )
        if any(s.state is not SpanState.FREE for s in view):
            label("free: the released range was already reused by another mapping")
        arena.written = []
        label("free")
        return arena

    def release_refused(self, arena: ArenaHandle, error: OSCallFailed) -> None:
        """A refused release surfaces as a typed error; the arena stays whole and freeable."""
        log = self.backend.take_log()
        want = [arena.model.release_call()]
        expect(
            [e.call for e in log] == want and log[-1].error == error.code,
            f"free raised {error!r}; OS calls {[str(e.call) for e in log]}, model predicts {want}",
        )
        expect(arena.impl.alive, f"{arena}: free failed in the OS but the arena says it is dead")
        self.check_arena(arena)
        label("free: release refused, arena still whole")

    @rule(arena=dead)
    @traced
    def double_free(self, arena: ArenaHandle) -> None:
        try:
            arena.impl.free()
        except DoubleFree:
            pass
        else:
            fail(f"{arena}: a second free was not refused")
        self.expect_calls("double free", [])
        label("double free")

    @rule(
        arena=dead,
        op=st.sampled_from(
            ["alloc", "try_alloc", "reset", "read", "write", "start", "cursor", "committed_bytes"]
        ),
    )
    @traced
    def use_after_free(self, arena: ArenaHandle, op: str) -> None:
        m = arena.model
        actions: dict[str, Callable[[], object]] = {
            "alloc": lambda: arena.impl.alloc(8, 8),
            "try_alloc": lambda: arena.impl.try_alloc(8, 8),
            "reset": lambda: arena.impl.reset(),
            "read": lambda: arena.impl.read(m.footer - 8, 8),
            "write": lambda: arena.impl.write(m.footer - 8, b"x" * 8),
            "start": lambda: arena.impl.start,
            "cursor": lambda: arena.impl.cursor,
            "committed_bytes": lambda: arena.impl.committed_bytes,
        }
        try:
            actions[op]()
        except UseAfterFree:
            pass
        else:
            fail(f"{arena}: {op} after free was not refused")
        self.expect_calls(f"{op} after free", [])
        label("use after free")

    @rule(arena=arenas, bad=st.sampled_from(BAD_LAYOUTS), fallible=st.booleans())
    @traced
    def bad_layout(self, arena: ArenaHandle, bad: tuple[object, object], fallible: bool) -> None:
        size, align = bad
        before = (arena.impl.start, arena.impl.cursor)
        fn = arena.impl.try_alloc if fallible else arena.impl.alloc
        name = "try_alloc" if fallible else "alloc"
        # A value of another type is refused as such, bool included; an int as a layout.
        typed = type(size) is int and type(align) is int
        want: type[Exception] = InvalidLayout if typed else InvalidArgumentType
        try:
            fn(size, align)
        except (InvalidLayout, InvalidArgumentType) as error:
            if not isinstance(error, want):
                fail(
                    f"{name}({size!r}, {align!r}) raised {type(error).__name__}, "
                    f"not {want.__name__}"
                )
        else:
            fail(f"{name}({size!r}, {align!r}) was not refused")
        self.check_unchanged(arena, before, "a bad layout")
        label("bad layout refused")
        self.expect_calls("bad layout", [])

    @rule(arena=arenas, case=st.sampled_from(BAD_ACCESSES))
    @traced
    def bad_access(self, arena: ArenaHandle, case: tuple[str, str]) -> None:
        """Reads and writes outside [P, F), or with bad arguments, touch nothing."""
        op, where = case
        m = arena.model
        addrs: dict[str, object] = {
            "below P": m.cursor - 1,
            "at F": m.footer,
            "across F": m.footer - 1,
            "null": 0,
            "top": (1 << 64) - 8,
            "str addr": str(m.cursor),
        }
        mistyped = where in ("str addr", "float length", "str data")
        want: type[Exception] = InvalidArgumentType if mistyped else OutOfBounds
        try:
            if op == "read":
                lengths: dict[str, object] = {"negative length": -1, "float length": 1.0}
                addr = addrs.get(where, m.cursor)
                arena.impl.read(addr, lengths.get(where, 2 if where == "across F" else 8))
            elif where == "str data":
                arena.impl.write(m.cursor, "text")
            else:
                arena.impl.write(addrs[where], b"\xaa\xaa")
        except (OutOfBounds, InvalidArgumentType) as error:
            if not isinstance(error, want):
                fail(f"{op} {where} raised {type(error).__name__}, not {want.__name__}")
        else:
            fail(f"{op} {where} was not refused")
        self.expect_calls("bad access", [])
        label(f"bad {op} refused")

    # ------------------------------------------------------------- invariants

    @invariant()
    def agrees_with_model_and_os(self) -> None:
        """docs/ARENA.md 6, after every step: every live arena, its allocations and its memory
        agree with the model and with the OS; what is reserved is exactly the live arenas'
        reservations; the commit charge is the model's, where it is observable.

        One invariant running each check in turn rather than one invariant per check:
        Hypothesis's bookkeeping around an invariant costs as much as a check.
        """
        for handle in self.live_arenas():
            self.check_arena(handle)
            self.check_allocations(handle)
        self.check_reservations()
        self.check_commit_charge()

    def check_arena(self, handle: ArenaHandle) -> None:
        """docs/ARENA.md 6.1 to 6.6: R, C, S, P, F and the committed bytes are the model's, the
        OS shows exactly [S, C + CONTAINER_SIZE) committed read-write and the rest of the
        reservation reserved, and the footer at F is intact."""
        m, impl = handle.model, handle.impl
        expect_layout(str(handle), impl, m)
        if impl.committed_bytes != m.committed_bytes:
            fail(f"{handle}: committed {impl.committed_bytes}, model says {m.committed_bytes}")
        if m.reservation % self.geometry.granularity:
            fail(f"{handle}: R is not granularity-aligned")
        for problem in m.invariant_violations():
            fail(f"{handle}: {problem}")
        view = self.backend.query(m.reservation, m.reservation_end)
        expect_view(str(handle), view, m.expected_view(), m.container)
        if self.direct:
            # Its own grows: the fence learns them from the OS's view just compared.
            self.backend.adopt(m.reservation, m.reserved_size)
        expect_bytes(
            self.backend, m.footer, handle.footer, f"{handle}: the footer at F was overwritten"
        )

    def check_allocations(self, handle: ArenaHandle) -> None:
        """docs/ARENA.md 6.9: live allocations are disjoint, lie in [S, F), and every pattern
        written into them reads back from memory (not through the arena).

        Runs right after ``check_arena`` confirmed, in this same pass with no OS call in
        between, that the OS shows all of [S, C + CONTAINER_SIZE) committed read-write: a
        chunk the model places there may be read without asking the OS again.
        """
        m = handle.model
        spans = sorted(m.allocations)
        for (a, n), (b, _) in itertools.pairwise(spans):
            if a + n > b:
                fail(f"{handle}: allocations at {a:#x} and {b:#x} overlap")
        lo, hi = m.start, m.footer
        for a, n in spans:
            if not (lo <= a and a + n <= hi):
                fail(f"{handle}: allocation at {a:#x} lies outside [S, F)")
        for alloc in handle.written:
            if not alloc.live:
                continue
            for offset, data in alloc.chunks.items():
                start = alloc.addr + offset
                if not (lo <= start and start + len(data) <= hi):
                    fail(f"{alloc}: the model says +{offset} is not committed")
                message = f"{alloc}: {len(data)} bytes at +{offset} were overwritten"
                expect_bytes(self.backend, start, data, message)

    def check_reservations(self) -> None:
        """docs/ARENA.md 6.10, step by step: what is reserved is exactly the live arenas' R.

        Checked after every step rather than only at teardown, so a leak shrinks to the
        step that caused it. Not for an implementation making its own calls: the backend
        never sees them, and each live arena's reservation is read from the OS in
        ``check_arena`` instead, its release in ``free``.
        """
        if self.direct:
            return
        live = {h.model.reservation: h.model.reserved_size for h in self.live_arenas()}
        if live == self.backend.live:
            return
        stray = {b: n for b, n in self.backend.live.items() if live.get(b) != n}
        if stray or not set(live) <= set(self.backend.live):
            fail(
                "reservations not matching a live arena: "
                + ", ".join(f"{b:#x}+{n:#x}" for b, n in sorted(stray.items()))
                + (f"; live arenas {[hex(b) for b in live]}" if not stray else "")
            )

    def check_commit_charge(self) -> None:
        """docs/ARENA.md 6.7, where the charge is observable: the emulated kernel's commit count."""
        if self.kernel32 is None:
            return
        live = self.live_arenas()
        expect_commit_charge(
            self.kernel32,
            sum(h.model.committed_bytes for h in live),
            [(str(h), h.model.reservation, h.model.reservation_end) for h in live],
        )

    def teardown(self) -> None:
        """Give back every reservation still held, without the implementation's help.

        Freeing is the ``free`` rule's business, checked there step by step (and leaks by
        ``reservations_match_live_arenas`` after every step): a failure first seen here,
        after the last step, could not be shrunk to the step that caused it.
        """
        self.backend.release_leftovers()


WINDOWS_FAULTS = (8, 1455, 87, 487)  # NOT_ENOUGH_MEMORY, COMMITMENT_LIMIT, INVALID_PARAMETER, ...
POSIX_FAULTS = (12, 22)  # ENOMEM, EINVAL


class FaultMachine(ArenaMachine):
    """ArenaMachine with a rule that makes the k-th next OS call fail with a chosen error.

    The failure is injected in front of the OS, so it can hit every call site: the
    reservation and the first commit of ``new``, a grow's commit, the release of ``free``.
    The guarantees are the machine's own checks: a failed creation leaves nothing reserved,
    a failed grow changes nothing and the arena stays usable, a failed release surfaces as
    a typed error with the arena whole, and a dead arena makes no OS call.
    """

    @rule(after=st.integers(0, 2), code=st.integers(0, 3))
    @traced
    def arm_fault(self, after: int, code: int) -> None:
        codes = POSIX_FAULTS if self.kernel32 is None else WINDOWS_FAULTS
        self.backend.arm(after, codes[code % len(codes)])


def machine_for(
    backend_name: str,
    geometry_name: str,
    min_aligns: tuple[int, ...] = MIN_ALIGNS,
    factory: ArenaFactory | None = None,
    impl: str | None = None,
    commit_limit: int | None = None,
    faults: bool = False,
    isolated: bool | None = None,
    strategy: str = RESERVE_COMMIT,
) -> type[ArenaMachine]:
    """A configured ArenaMachine subclass, named after its configuration.

    The name keys Hypothesis's example database, so each configuration keeps its own
    examples. ``impl`` names the implementation as ``MODULE:FACTORY``; a regression file
    records it, so a replay runs the same implementation unless told otherwise.
    ``isolated`` None runs the implementation as it declares: in a child process when it
    declares ``touches_memory_itself`` (native code, whose own loads and stores no fence
    can stop).
    """
    if isolated is None:
        # Only an implementation named MODULE:FACTORY can be rebuilt in the child.
        isolated = factory is None and runs_isolated_by_default(impl or DEFAULT_IMPL)
    direct = makes_os_calls_itself(impl or DEFAULT_IMPL) if factory is None else False
    if direct and (faults or commit_limit is not None or backend_name != host_backend()):
        raise ValueError(
            f"{impl} makes its own OS calls: it runs on this host's own backend "
            f"({host_backend()}), with neither injected faults nor a commit limit, which "
            "only calls through the backend can have"
        )
    if factory is None:
        factory = load_factory(impl or DEFAULT_IMPL)
    attrs: dict[str, object] = {
        "backend_name": backend_name,
        "geometry_name": geometry_name,
        "min_aligns": min_aligns,
        "arena_impl": impl,
        "arena_factory": staticmethod(factory),
        "commit_limit": commit_limit,
        "isolated": isolated,
        "direct": direct,
        "strategy": strategy,
    }
    if min_aligns != MIN_ALIGNS:

        @precondition(lambda self: len(self.live_arenas()) < MAX_LIVE_ARENAS)
        @rule(target=ArenaMachine.arenas, min_align=st.sampled_from(min_aligns))
        @traced
        def new_arena(
            self: ArenaMachine, min_align: int
        ) -> ArenaHandle | MultipleResults[ArenaHandle]:
            return self.create_arena(min_align)

        attrs["new_arena"] = new_arena
    parts = [backend_name, geometry_name, "align" + "-".join(map(str, min_aligns))]
    if impl is not None and impl != DEFAULT_IMPL:
        parts.append(impl.replace(":", ".").rsplit(".", 1)[-1])
    elif factory is not Arena.new:
        parts.append(getattr(factory, "__name__", "custom"))
    if commit_limit is not None:
        parts.append(f"limit{commit_limit}")
    if isolated:
        parts.append("isolated")
    if strategy != RESERVE_COMMIT:
        parts.append(strategy)
    base = FaultMachine if faults else ArenaMachine
    name = base.__name__ + "_" + "_".join(parts)
    return type(re.sub(r"\W", "_", name), (base,), attrs)
