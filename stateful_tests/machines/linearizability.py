"""Linearizability of pool histories: real threads' calls against the sequential model.

A history is every ``get`` and ``add`` the threads made, each with the interval between its
invocation and its return (tickets of one global counter). It is linearizable when some
sequential order of the calls respects real time (a call that returned before another was
invoked comes first) and the model, run in that order, gives every call its observed result.
"""

from __future__ import annotations

import copy
import itertools
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from arenacheck.impl.errors import PoolEmpty
from arenacheck.impl.pool import ArenaPool, PoolArena
from arenacheck.machines.pool_sync import RecordingCondition
from arenacheck.machines.threads import ThreadRun
from arenacheck.model.pool import WINDOWS, GetOutcome, PoolModel


@dataclass(frozen=True)
class Op:
    """One completed call: ``holder`` names the get whose arena an add returns."""

    thread: int
    kind: str  # "get" or "add"
    holder: str
    arena: int | None  # get: what it returned (None: PoolEmpty); add: what it returned
    invoked: int
    returned: int


def apply(model: PoolModel, op: Op) -> bool:
    """Whether the sequential model, in this state, gives ``op`` its observed result."""
    if op.kind == "add":
        return model.holders.get(op.holder) == op.arena and model.add(op.holder) == op.arena
    result = model.get(op.holder)
    if result.outcome is GetOutcome.WAIT:
        return False  # a blocked get takes effect later, when an arena is there
    if result.outcome is GetOutcome.EMPTY:
        return op.arena is None
    return result.arena == op.arena


def linearize(ops: list[Op], model: PoolModel) -> list[Op] | None:
    """A sequential order of ``ops`` that respects real time (an op that returned before
    another was invoked comes first) and that the model explains; None if there is none."""
    before = [
        sum(1 << j for j, other in enumerate(ops) if other.returned < op.invoked) for op in ops
    ]
    everything = (1 << len(ops)) - 1
    dead_ends: set[tuple[int, tuple[object, ...]]] = set()

    def search(done: int, state: PoolModel) -> list[int] | None:
        if done == everything:
            return []
        key = (done, state.key())
        if key in dead_ends:
            return None
        for i, op in enumerate(ops):
            if done >> i & 1 or before[i] & ~done:
                continue
            nxt = copy.deepcopy(state)
            if apply(nxt, op):
                rest = search(done | 1 << i, nxt)
                if rest is not None:
                    return [i, *rest]
        dead_ends.add(key)
        return None

    order = search(0, model)
    return None if order is None else [ops[i] for i in order]


def plan_thread(program: list[str], behaviour: str) -> list[str]:
    """The calls a thread makes: "add" returns its latest arena (skipped when it holds none);
    a Windows thread holds at most one (as oxc's linter threads do), and every thread ends
    by returning what it holds, so no history deadlocks by construction."""
    calls: list[str] = []
    holding = 0
    for op in program:
        if op == "add" and holding == 0:
            continue
        if op == "get" and behaviour == WINDOWS and holding:
            calls.append("add")
            holding -= 1
        calls.append(op)
        holding += 1 if op == "get" else -1
    return calls + ["add"] * holding


def run_history(
    pool: ArenaPool, cond: RecordingCondition, programs: list[list[str]], pauses: list[int]
) -> list[Op]:
    """Run each thread's calls on its own OS thread, recording every call's interval."""
    ticket = itertools.count().__next__
    ops: list[Op] = []
    running = [0]
    arrival = threading.Lock()

    def thread(t: int, calls: list[str]) -> Callable[[], None]:
        def run() -> None:
            held: list[tuple[str, PoolArena | None]] = []
            # Spin until every thread runs: a thread woken from a barrier arrives tens of
            # microseconds late, by which time the first one has made all of its calls.
            with arrival:
                running[0] += 1
            while running[0] < len(programs):
                pass
            for k, call in enumerate(calls):
                pause = pauses[(t * 7 + k) % len(pauses)]
                if pause:  # no pause keeps every thread runnable, contending for the GIL
                    time.sleep(pause * 1e-5)
                if call == "get":
                    holder = f"t{t}.{k}"
                    invoked = ticket()
                    try:
                        arena: PoolArena | None = pool.get()
                    except PoolEmpty:
                        arena = None
                    ops.append(
                        Op(t, "get", holder, None if arena is None else arena.id, invoked, ticket())
                    )
                    if arena is not None:
                        held.append((holder, arena))
                elif held:  # a POSIX get may have found the pool empty
                    holder, got = held.pop()
                    assert got is not None
                    invoked = ticket()
                    pool.add(got)
                    ops.append(Op(t, "add", holder, got.id, invoked, ticket()))

        return run

    ThreadRun(pool, cond, [thread(t, calls) for t, calls in enumerate(programs)]).join()
    return ops
