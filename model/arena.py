"""Reference model of the fixed-size arena (docs/ARENA.md sections 2, 3 and 6).

Given the reservation base R the OS returned, the model predicts every address the
arena computes, every OS call it must make (and nothing else), and every refusal.
All address arithmetic is 64-bit and wrapping, as in the Rust original.

Invariant of a live model: ``R <= C``, ``C + CONTAINER_SIZE <= R + RESERVED_SIZE``,
``C <= S <= S0``, ``S <= P <= F``, ``S % PAGE == 0``, and ``allocations`` are disjoint
ranges inside ``[P, F)``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from functools import cached_property

from arenacheck.model.arith import ISIZE_MAX, MASK64, is_power_of_two, round_down, round_up, wrap
from arenacheck.model.geometry import Geometry
from arenacheck.model.spans import OsSpan, SpanState, merge_spans

MIN_ALIGNS = (1, 2, 4, 8, 16)


class OsOp(enum.Enum):
    RESERVE = "reserve"
    RESERVE_AT = "reserve-at"
    RESERVE_COMMITTED = "reserve-committed"
    COMMIT = "commit"
    DECOMMIT = "decommit"
    RELEASE = "release"


@dataclass(frozen=True)
class OsCall:
    """An OS-neutral virtual-memory call; ``addr`` is None for "anywhere"."""

    op: OsOp
    addr: int | None
    size: int

    def __str__(self) -> str:
        where = "anywhere" if self.addr is None else f"{self.addr:#x}"
        return f"{self.op.value}({where}, {self.size:#x})"


class Outcome(enum.Enum):
    OK = "ok"
    FULL = "full"
    INVALID_LAYOUT = "invalid-layout"


def layout_error(size: object, align: object) -> str | None:
    """Why ``(size, align)`` is not a valid Rust ``Layout``, or None if it is."""
    if type(size) is not int or type(align) is not int:
        return f"size and align must be int, got {type(size).__name__} and {type(align).__name__}"
    if size < 0:
        return f"size {size} is negative"
    if not is_power_of_two(align) or align > 1 << 63:
        return f"align {align} is not a power of two that fits in a usize"
    if round_up(size, align) > ISIZE_MAX:
        return f"size {size} rounded up to align {align} exceeds isize::MAX"
    return None


@dataclass(frozen=True)
class AllocPlan:
    """What ``alloc(size, align)`` must do: its outcome, address, and the grow it needs."""

    outcome: Outcome
    address: int | None = None
    commit: OsCall | None = None
    new_start: int | None = None
    reason: str = ""

    @property
    def grows(self) -> bool:
        return self.commit is not None


RESERVE_COMMIT = "reserve-commit"
TIGHT = "tight"


@dataclass
class ArenaModel:
    """``reservation`` is what the arena holds: R, or for ``tight`` the container C itself.

    ``geometry``, ``reservation``, ``pool`` and ``strategy`` never change once the model
    exists, so the layout derived from them (C, F, S0, ...) is computed once.
    """

    geometry: Geometry
    reservation: int
    min_align: int = 1
    pool: bool = False
    strategy: str = RESERVE_COMMIT
    start: int = field(init=False)
    cursor: int = field(init=False)
    alive: bool = field(init=False, default=True)
    allocations: list[tuple[int, int]] = field(init=False, default_factory=list)
    grows: int = field(init=False, default=0)
    # The last expected view and the S it was built for: nothing else in it ever changes.
    _view: tuple[int, list[OsSpan]] | None = field(
        init=False, default=None, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        if self.min_align not in MIN_ALIGNS:
            raise ValueError(f"MIN_ALIGN must be one of {MIN_ALIGNS}, got {self.min_align}")
        self.start = self.initial_start
        self.cursor = self.reset_cursor

    # ----------------------------------------------------------------- layout

    @cached_property
    def container(self) -> int:
        """C: R rounded up to CONTAINER_ALIGN (R itself when already aligned)."""
        return wrap(self.reservation + (-self.reservation) % self.geometry.container_align)

    @cached_property
    def container_end(self) -> int:
        return self.container + self.geometry.container_size

    @cached_property
    def reserved_size(self) -> int:
        """RESERVED_SIZE, or CONTAINER_SIZE for a tight arena (head and tail given back)."""
        g = self.geometry
        return g.container_size if self.strategy == TIGHT else g.reserved_size

    @cached_property
    def reservation_end(self) -> int:
        return self.reservation + self.reserved_size

    @cached_property
    def footer(self) -> int:
        """F: the cursor never goes above it."""
        return self.container + self.geometry.footer_offset

    @cached_property
    def initial_start(self) -> int:
        """S0: the bottom of the first commit."""
        return self.container_end - self.geometry.first_commit

    @cached_property
    def reset_cursor(self) -> int:
        return self.container + self.geometry.active_size if self.pool else self.footer

    @property
    def committed_bytes(self) -> int:
        return self.container_end - self.start

    @property
    def capacity(self) -> int:
        """Bytes allocatable with align 1 before the next grow."""
        return self.cursor - self.start

    # --------------------------------------------------------------- creation

    @staticmethod
    def creation_calls(
        geometry: Geometry,
        reservation: int | None,
        strategy: str = RESERVE_COMMIT,
        partial_release: bool = True,
    ) -> list[OsCall]:
        """The calls ``new()`` makes, given the base the first reservation got.

        reserve-commit: reserve anywhere, then the first commit. tight, where the OS can
        release part of a reservation (POSIX): reserve, give back the head [R, C) and the
        tail [C + CONTAINER_SIZE, R + RESERVED_SIZE), commit. tight elsewhere (Windows
        without VirtualAlloc2): reserve, release, reserve exactly the container at C, commit.
        """
        calls = [OsCall(OsOp.RESERVE, None, geometry.reserved_size)]
        if reservation is None:
            return calls
        probe = ArenaModel(geometry, reservation)
        c, ce = probe.container, probe.container_end
        if strategy == TIGHT and partial_release:
            if c > reservation:
                calls.append(OsCall(OsOp.RELEASE, reservation, c - reservation))
            calls.append(OsCall(OsOp.RELEASE, ce, probe.reservation_end - ce))
        elif strategy == TIGHT:
            calls.append(OsCall(OsOp.RELEASE, reservation, geometry.reserved_size))
            calls.append(OsCall(OsOp.RESERVE_AT, c, geometry.container_size))
        calls.append(OsCall(OsOp.COMMIT, probe.initial_start, geometry.first_commit))
        return calls

    def release_call(self) -> OsCall:
        return OsCall(OsOp.RELEASE, self.reservation, self.reserved_size)

    # ------------------------------------------------------------------ alloc

    def plan_alloc(self, size: object, align: object) -> AllocPlan:
        """docs/ARENA.md 3 "alloc": the bump-down fast path, else a doubling grow capped at C."""
        reason = layout_error(size, align)
        if reason is not None:
            return AllocPlan(Outcome.INVALID_LAYOUT, reason=reason)
        assert isinstance(size, int) and isinstance(align, int)
        a = max(align, self.min_align)
        p = wrap(self.cursor - size) & (MASK64 & ~(a - 1))
        if wrap(p - self.start) <= ISIZE_MAX:
            return AllocPlan(Outcome.OK, address=p)
        if wrap(p - self.container) > ISIZE_MAX:
            return AllocPlan(Outcome.FULL, reason="does not fit in the whole container")
        committed = self.container_end - self.start
        doubling_start = max(self.start - committed, self.container)
        needed_start = round_down(p, self.geometry.page)
        new_start = min(doubling_start, needed_start)
        commit = OsCall(OsOp.COMMIT, new_start, self.start - new_start)
        return AllocPlan(Outcome.OK, address=p, commit=commit, new_start=new_start)

    def apply_alloc(self, plan: AllocPlan, size: int, commit_succeeded: bool = True) -> int | None:
        """Move the model to the state after the planned alloc; None when it failed."""
        if plan.outcome is not Outcome.OK or not commit_succeeded:
            return None
        assert plan.address is not None
        if plan.new_start is not None:
            self.start = plan.new_start
            self.grows += 1
        self.cursor = plan.address
        self.allocations.append((plan.address, size))
        return plan.address

    # ------------------------------------------------------------ reset, free

    def reset(self) -> None:
        """P back to its start; S keeps the grown commit; allocations end."""
        self.cursor = self.reset_cursor
        self.allocations.clear()

    def free(self) -> OsCall:
        self.alive = False
        self.allocations.clear()
        return self.release_call()

    # ---------------------------------------------------------------- OS view

    def expected_view(self) -> list[OsSpan]:
        """docs/ARENA.md 6.6: what the OS must show of the reservation of a live arena:
        exactly [S, C + CONTAINER_SIZE) committed read-write, the rest reserved.

        Built again only when S has moved since the last call; the list returned is shared
        between calls and must not be changed.
        """
        if self._view is None or self._view[0] != self.start:
            spans = [
                OsSpan(self.reservation, self.start, SpanState.RESERVED),
                OsSpan(self.start, self.container_end, SpanState.COMMITTED, "rw-"),
                OsSpan(self.container_end, self.reservation_end, SpanState.RESERVED),
            ]
            self._view = (self.start, merge_spans([s for s in spans if s.size > 0]))
        return self._view[1]

    # ------------------------------------------------------------- invariants

    def invariant_violations(self) -> list[str]:
        """docs/ARENA.md 6, items 1 to 4, on the model's own state (a self-check)."""
        g = self.geometry
        out: list[str] = []
        if self.reservation % g.granularity:
            out.append(f"R {self.reservation:#x} is not {g.granularity:#x}-aligned")
        if self.container % g.container_align:
            out.append(f"C {self.container:#x} is not {g.container_align:#x}-aligned")
        if self.start % g.page:
            out.append(f"S {self.start:#x} is not page-aligned")
        if not self.reservation <= self.container:
            out.append("C lies below R")
        if self.container_end > self.reservation_end:
            out.append("the container runs past the reservation")
        if not self.container <= self.start <= self.initial_start:
            out.append("S is outside [C, S0]")
        if not self.start <= self.cursor <= self.footer:
            out.append("P is outside [S, F]")
        if self.committed_bytes > g.container_size:
            out.append("more than the container is committed")
        return out

    def allocation_containing(self, addr: int, n: int) -> tuple[int, int] | None:
        for base, size in self.allocations:
            if base <= addr and addr + n <= base + size:
                return base, size
        return None
