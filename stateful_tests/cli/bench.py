"""``arenacheck bench``: the figures that say how fast the harness explores and what an arena costs.

1. Harness throughput: ArenaMachine steps per second with every check on, against a bare
   RuleBasedStateMachine with as many rules doing nothing, same settings, same run.
2. Scaling: wall time of one stateful workload under pytest-xdist with -n 1 and -n 2.
3. Live arenas per process until creation fails, ``reserve-commit`` against ``tight``,
   each counted in a child process of its own.
4. Commit per arena for 100 KiB of mixed allocations, ``reserve-commit`` against ``system``,
   read from the emulated kernel's commit count.
5. The zoo: median and worst time to the first failure, and minimised program lengths.
6. The cost of crash isolation: ArenaMachine steps per second with the implementation in a
   child process against in this one, same implementation, backend and settings.
"""

from __future__ import annotations

import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO, cast

from hypothesis import settings
from hypothesis.stateful import (
    RuleBasedStateMachine,
    precondition,
    rule,
    run_state_machine_as_test,
)

ROOT = Path(__file__).resolve().parents[2]


def _arena_rules() -> list[Any]:
    from arenacheck.machines.arena import ArenaMachine
    from hypothesis.stateful import RULE_MARKER

    found = (getattr(getattr(ArenaMachine, name), RULE_MARKER, None) for name in dir(ArenaMachine))
    return [r for r in found if r is not None]


def _arena_rule_count() -> int:
    return len(_arena_rules())


def _bare_machine(rules: int) -> type[RuleBasedStateMachine]:
    """A machine with ``rules`` rules that do nothing but count."""
    counter = {"steps": 0}

    def make(i: int) -> Any:
        def step(self: Any) -> None:
            counter["steps"] += 1

        step.__name__ = f"rule_{i}"
        return rule()(step)

    attrs: dict[str, Any] = {f"rule_{i}": make(i) for i in range(rules)}
    attrs["counter"] = counter
    return type("BareMachine", (RuleBasedStateMachine,), attrs)


def _drawing_machine() -> type[RuleBasedStateMachine]:
    """ArenaMachine's rules with their arguments, bundles and preconditions, doing nothing
    but count.

    What Hypothesis alone spends on drawing ArenaMachine's programs: the part of the gap
    between ArenaMachine and the bare machine that no check or model makes. The
    preconditions ask ``live_arenas()``; here the live arenas are the ``arenas`` bundle,
    as in ArenaMachine, where ``free`` consumes from it.
    """
    from arenacheck.machines.arena import ArenaMachine

    counter = {"steps": 0}
    bundles = {
        b.name: b for b in (ArenaMachine.arenas, ArenaMachine.dead, ArenaMachine.allocations)
    }

    def make(name: str, returns: bool) -> Any:
        def step(self: Any, **kwargs: Any) -> object:
            counter["steps"] += 1
            return object() if returns else None

        step.__name__ = name
        return step

    attrs: dict[str, Any] = {
        "counter": counter,
        "live_arenas": lambda self: self.bundle(ArenaMachine.arenas.name),
    }
    for r in _arena_rules():
        name = r.function.__name__
        # rule()'s overloads cannot tell a dict of strategies from its own keywords.
        declare: Callable[..., Any] = rule
        targets = {"target": bundles[r.targets[0]]} if r.targets else {}
        fn = declare(**targets, **r.arguments)(make(name, bool(r.targets)))
        for condition in r.preconditions:
            fn = precondition(cast(Callable[[Any], bool], condition))(fn)
        attrs[name] = fn
    return type("DrawingMachine", (RuleBasedStateMachine,), attrs)


def _unchecked(machine: type[RuleBasedStateMachine]) -> type[RuleBasedStateMachine]:
    """``machine`` without its after-step checks: its rules alone, implementation included."""

    def check_invariants(self: Any, *args: Any, **kwargs: Any) -> None:
        pass

    name = machine.__name__ + "_unchecked"
    return type(name, (machine,), {"check_invariants": check_invariants})


def throughput(examples: int, rounds: int = 3) -> dict[str, float]:
    """Steps per second of four machines, run in turn ``rounds`` times; medians.

    ArenaMachine, the bare machine, and between them two that split the gap: ArenaMachine
    without its after-step checks, and its rules drawn but doing nothing. Interleaved
    rounds rather than one long run each, so that a slow spell of the machine (another
    process, frequency scaling) falls on all four alike.
    """
    from arenacheck.machines import labels
    from arenacheck.machines.arena import machine_for

    run = settings(
        max_examples=examples,
        stateful_step_count=50,
        deadline=None,
        database=None,
        print_blob=False,
    )
    arena = machine_for("posix-native", "small")
    rates: dict[str, list[float]] = {"arena": [], "unchecked": [], "drawing": [], "bare": []}
    for _ in range(rounds):
        for key, machine in (("arena", arena), ("unchecked", _unchecked(arena))):
            labels.reset()
            start = time.perf_counter()
            run_state_machine_as_test(machine, settings=run)
            rates[key].append(labels.RULES.total() / (time.perf_counter() - start))
        for key, machine in (
            ("bare", _bare_machine(_arena_rule_count())),
            ("drawing", _drawing_machine()),
        ):
            start = time.perf_counter()
            run_state_machine_as_test(machine, settings=run)
            steps = machine.counter["steps"]  # type: ignore[attr-defined]
            rates[key].append(steps / (time.perf_counter() - start))
    medians = {k: statistics.median(v) for k, v in rates.items()}
    bare = medians["bare"]
    return {
        "arena_steps_per_s": medians["arena"],
        "bare_steps_per_s": bare,
        "ratio": medians["arena"] / bare,
        "unchecked_steps_per_s": medians["unchecked"],
        "unchecked_ratio": medians["unchecked"] / bare,
        "drawing_steps_per_s": medians["drawing"],
        "drawing_ratio": medians["drawing"] / bare,
    }


def scaling(quick: bool) -> dict[str, float]:
    selection = ["-k", "posix-native and small"] if quick else ["-k", "posix-native"]
    times = {}
    with tempfile.TemporaryDirectory() as tmp:
        for n in (1, 2):
            env = {
                **os.environ,
                "ARENACHECK_PROFILE": "ci",
                "ARENACHECK_DATABASE_DIR": str(Path(tmp) / f"db{n}"),
                "ARENACHECK_FAILURES_DIR": str(Path(tmp) / "failures"),
            }
            args = [
                sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-n", str(n),
                "stateful_tests/tests/test_arena_machine.py", *selection,
            ]  # fmt: skip
            start = time.perf_counter()
            done = subprocess.run(
                args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800
            )
            times[n] = time.perf_counter() - start
            if done.returncode != 0:
                raise RuntimeError(
                    f"the scaling workload failed with -n {n}:\n{done.stdout[-4000:]}"
                )
    return {"n1_s": times[1], "n2_s": times[2], "speedup": times[1] / times[2]}


_LIVE_CHILD = """
import json, sys
from arenacheck.impl.arena import Arena
from arenacheck.impl.errors import OSCallFailed
from arenacheck.impl.posix_backend import PosixBackend
from arenacheck.model.geometry import Geometry
backend = PosixBackend()
g = Geometry.oxc(backend.page, backend.granularity)
arenas = []
error = None
while True:
    try:
        arenas.append(Arena.new(backend, g, strategy=sys.argv[1]))
    except OSCallFailed as e:
        error = str(e)
        break
print(json.dumps({"arenas": len(arenas), "error": error}))
"""


def live_arenas() -> dict[str, Any]:
    out: dict[str, Any] = {}
    for strategy in ("reserve-commit", "tight"):
        result = subprocess.run(
            [sys.executable, "-c", _LIVE_CHILD, strategy],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            capture_output=True,
            text=True,
            timeout=600,
            check=True,
        )
        out[strategy] = json.loads(result.stdout)
    return out


def commit_per_arena() -> dict[str, float]:
    from arenacheck.backends.standin import EmulatedKernel32
    from arenacheck.impl.arena import Arena
    from arenacheck.impl.win_backend import WindowsBackend
    from arenacheck.model.geometry import Geometry

    rng = random.Random(0)
    sizes: list[int] = []
    while sum(sizes) < 100 * 1024:
        sizes.append(rng.choice([8, 24, 64, 100, 256, 1000, 4096]))
    out: dict[str, float] = {"allocated": float(sum(sizes))}
    for strategy in ("reserve-commit", "system"):
        k32 = EmulatedKernel32()
        backend = WindowsBackend(k32, "win32-emulated")
        g = Geometry.oxc(backend.page, backend.granularity)
        arena = Arena.new(backend, g, strategy=strategy)
        for size in sizes:
            arena.alloc(size, 8)
        out[strategy] = float(k32.model.committed_bytes)
        arena.free()
        k32.close()
    out["ratio"] = out["system"] / out["reserve-commit"]
    return out


def zoo_figures(quick: bool) -> dict[str, Any]:
    import multiprocessing

    from arenacheck.faults.zoo import ZOO
    from arenacheck.faults.zoo_runner import run_entry

    names = [e.name for e in ZOO]
    if quick:
        names = names[::4]
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        results = pool.map(run_entry, names, chunksize=1)
    firsts = [r.seconds for r in results if r.caught]
    steps = [r.steps for r in results if r.caught]
    return {
        "faults": len(results),
        "caught": len(firsts),
        "median_first_s": statistics.median(firsts),
        "worst_first_s": max(firsts),
        "median_steps": statistics.median(steps),
        "worst_steps": max(steps),
    }


# (label, implementation, backend) of figure 6; the C arena only where it can be built.
ISOLATION_CASES = (
    ("arena on posix-native", "arenacheck.impl.arena:Arena", "posix-native"),
    ("arena on win32-emulated", "arenacheck.impl.arena:Arena", "win32-emulated"),
    ("C arena on posix-native", "arenacheck.impl.c_arena:CArena", "posix-native"),
)


def isolation_cost(examples: int, rounds: int = 3) -> dict[str, dict[str, float] | str]:
    """Per case, ArenaMachine steps per second isolated and in-process, and their ratio
    (medians of ``rounds`` interleaved rounds); a case that cannot run here maps to why.

    The child process is started once per backend and kept across examples, as in a test
    run: it is started (and the C library loaded) before the clock runs, so the figure is
    the cost per step of every call crossing the pipe.
    """
    from arenacheck.backends.isolation import child_backend
    from arenacheck.backends.registry import unavailable_reason
    from arenacheck.impl.c_load import load_library
    from arenacheck.impl.c_load import unavailable_reason as c_unavailable_reason
    from arenacheck.machines import labels
    from arenacheck.machines.arena import machine_for

    run = settings(
        max_examples=examples,
        stateful_step_count=50,
        deadline=None,
        database=None,
        print_blob=False,
    )
    out: dict[str, dict[str, float] | str] = {}
    runnable: list[tuple[str, str, str]] = []
    for name, impl, backend in ISOLATION_CASES:
        reason = unavailable_reason(backend)
        if reason is None and "c_arena" in impl:
            reason = c_unavailable_reason()
        if reason is not None:
            out[name] = reason
            continue
        runnable.append((name, impl, backend))
        child_backend(backend, None)
        if "c_arena" in impl:
            load_library()
    rates: dict[str, dict[bool, list[float]]] = {n: {True: [], False: []} for n, _, _ in runnable}
    for _ in range(rounds):
        for name, impl, backend in runnable:
            for isolated in (False, True):
                machine = machine_for(backend, "small", impl=impl, isolated=isolated)
                labels.reset()
                start = time.perf_counter()
                run_state_machine_as_test(machine, settings=run)
                rates[name][isolated].append(labels.RULES.total() / (time.perf_counter() - start))
    for name, by_mode in rates.items():
        inside, isolated_rate = (statistics.median(by_mode[m]) for m in (False, True))
        out[name] = {
            "in_process_steps_per_s": inside,
            "isolated_steps_per_s": isolated_rate,
            "ratio": isolated_rate / inside,
        }
    return out


def isolation_line(figures: dict[str, dict[str, float] | str]) -> str:
    parts = []
    for name, f in figures.items():
        if isinstance(f, str):
            parts.append(f"{name} not run ({f})")
        else:
            parts.append(
                f"{name} {f['isolated_steps_per_s']:.0f} steps/s isolated, "
                f"{f['in_process_steps_per_s']:.0f} in-process, ratio {f['ratio']:.3f}"
            )
    return "6. isolation: " + "; ".join(parts)


def run_bench(quick: bool, out: TextIO = sys.stdout) -> int:
    from arenacheck.backends.registry import standin_installed
    from arenacheck.harness.profiles import ensure_profiles_loaded

    ensure_profiles_loaded()
    started = time.perf_counter()
    print(f"arenacheck bench{' --quick' if quick else ''}", file=out)
    with standin_installed():
        t = throughput(30 if quick else 200)
    print(
        f"1. throughput: ArenaMachine {t['arena_steps_per_s']:.0f} steps/s, bare machine "
        f"{t['bare_steps_per_s']:.0f} steps/s, ratio {t['ratio']:.3f}; without its "
        f"after-step checks {t['unchecked_steps_per_s']:.0f} steps/s, ratio "
        f"{t['unchecked_ratio']:.3f}; its rules drawn but doing nothing "
        f"{t['drawing_steps_per_s']:.0f} steps/s, ratio {t['drawing_ratio']:.3f}",
        file=out,
        flush=True,
    )
    s = scaling(quick)
    print(
        f"2. scaling: -n 1 {s['n1_s']:.1f} s, -n 2 {s['n2_s']:.1f} s, speed-up {s['speedup']:.2f}",
        file=out,
        flush=True,
    )
    live = live_arenas()
    rc, tight = live["reserve-commit"], live["tight"]
    print(
        f"3. live arenas per process: reserve-commit {rc['arenas']} (ended by: {rc['error']}), "
        f"tight {tight['arenas']} (ended by: {tight['error']})",
        file=out,
        flush=True,
    )
    c = commit_per_arena()
    print(
        f"4. commit for {c['allocated']:.0f} bytes of mixed allocations: reserve-commit "
        f"{c['reserve-commit']:.0f} bytes, system {c['system']:.0f} bytes, ratio {c['ratio']:.0f}",
        file=out,
        flush=True,
    )
    z = zoo_figures(quick)
    print(
        f"5. zoo ({z['caught']} of {z['faults']} faults caught): first failure median "
        f"{z['median_first_s']:.1f} s, worst {z['worst_first_s']:.1f} s; minimised program "
        f"median {z['median_steps']} steps, worst {z['worst_steps']} steps",
        file=out,
        flush=True,
    )
    with standin_installed():
        iso = isolation_cost(10 if quick else 30, rounds=1 if quick else 3)
    print(isolation_line(iso), file=out, flush=True)
    print(f"bench took {time.perf_counter() - started:.0f} s", file=out)
    return 0 if z["caught"] == z["faults"] else 1
