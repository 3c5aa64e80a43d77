"""Campaigns: every machine of a backend, run for minutes across several processes.

Each worker process loops over the machines in short Hypothesis runs until the deadline,
reporting its running totals (examples, rule calls, edge labels, failures) to the parent,
which prints a live progress line and, at the end, how often each rule and each label
fired. A required label that never fired fails the campaign like a bug does: it marks a
part of the arena the campaign never reached.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import queue
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from arenacheck.backends.registry import WIN32_EMULATED, standin_installed
from arenacheck.harness.profiles import DATABASE_ENV, database_from, local_database_dir
from arenacheck.machines import labels
from arenacheck.machines.arena import REQUIRED_LABELS, machine_for
from arenacheck.machines.registry import vm_machine_for
from hypothesis import settings
from hypothesis.stateful import RuleBasedStateMachine

GEOMETRIES = ("small", "oxc")
CHUNK_EXAMPLES = 20


@dataclass
class Totals:
    examples: int = 0
    rules: Counter[str] = field(default_factory=Counter)
    labels: Counter[str] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)

    @property
    def steps(self) -> int:
        return sum(self.rules.values())


def _worker(backend: str, deadline: float, worker: int, out: Any, failures_dir: str) -> None:
    from arenacheck.harness.runner import run_machine

    chunk = settings(
        max_examples=CHUNK_EXAMPLES,
        stateful_step_count=50,
        deadline=None,
        database=database_from(os.environ.get(DATABASE_ENV), local_database_dir()),
        print_blob=False,
        report_multiple_bugs=False,
    )
    machines: list[type[RuleBasedStateMachine]] = [machine_for(backend, g) for g in GEOMETRIES]
    machines += [vm_machine_for(backend, g) for g in GEOMETRIES]
    failed: set[str] = set()
    examples = 0
    context = standin_installed() if backend == WIN32_EMULATED else contextlib.nullcontext()
    with context:
        while time.monotonic() < deadline:
            for machine in machines:
                if time.monotonic() >= deadline or machine.__name__ in failed:
                    continue
                start = labels.RULES.total()
                try:
                    run_machine(
                        machine,
                        backend_name=backend,
                        run_settings=chunk,
                        write_failures_to=Path(failures_dir),
                    )
                except Exception as error:
                    failed.add(machine.__name__)
                    notes = " ".join(getattr(error, "__notes__", [])[-1:])
                    first = str(error).splitlines()[0] if str(error) else ""
                    out.put(("failure", worker, f"{machine.__name__}: {first} ({notes})"))
                examples += CHUNK_EXAMPLES if labels.RULES.total() > start else 0
                out.put(("totals", worker, examples, dict(labels.RULES), dict(labels.COUNTS)))
            if len(failed) == len(machines):
                break
    out.put(("done", worker))


def run_campaign(
    backend: str, minutes: float, jobs: int, failures_dir: Path, out: TextIO = sys.stdout
) -> int:
    """Run the campaign; returns the exit status (0: no failure and every label fired)."""
    ctx = multiprocessing.get_context("spawn")
    messages: Any = ctx.Queue()
    start = time.monotonic()
    deadline = start + minutes * 60
    procs = [
        ctx.Process(target=_worker, args=(backend, deadline, w, messages, str(failures_dir)))
        for w in range(jobs)
    ]
    for p in procs:
        p.start()
    per_worker: dict[int, Totals] = {w: Totals() for w in range(jobs)}
    failures: list[str] = []
    done: set[int] = set()
    tty = out.isatty()
    last_line = 0.0
    while len(done) < jobs:
        try:
            msg = messages.get(timeout=1.0)
        except queue.Empty:
            msg = None
            if not any(p.is_alive() for p in procs):
                break
        if msg is not None:
            kind, worker = msg[0], msg[1]
            if kind == "totals":
                per_worker[worker] = Totals(msg[2], Counter(msg[3]), Counter(msg[4]))
            elif kind == "failure":
                failures.append(msg[2])
                print(f"\nFAILURE {msg[2]}", file=out)
            elif kind == "done":
                done.add(worker)
        now = time.monotonic()
        if now - last_line >= (1.0 if tty else 10.0):
            last_line = now
            total = _sum(per_worker.values())
            elapsed = now - start
            line = (
                f"[{elapsed:6.0f}s] examples {total.examples:7d}  steps {total.steps:9d}  "
                f"steps/s {total.steps / max(elapsed, 1e-9):8.0f}  failures {len(failures)}"
            )
            print(("\r" + line) if tty else line, end="" if tty else "\n", file=out, flush=True)
    for p in procs:
        p.join(timeout=30)
    crashed = [p.exitcode for p in procs if p.exitcode not in (0, None)]
    total = _sum(per_worker.values())
    elapsed = time.monotonic() - start
    print(file=out)
    print(_table(total, elapsed, jobs), file=out)
    missing = [name for name in REQUIRED_LABELS if total.labels[name] == 0]
    status = 0
    if missing:
        print(f"FAILED: required labels that never fired: {', '.join(missing)}", file=out)
        status = 1
    if crashed:
        print(f"FAILED: worker processes died with exit codes {crashed}", file=out)
        status = 1
    if failures:
        print(f"FAILED: {len(failures)} machine(s) failed:", file=out)
        for f in failures:
            print(f"  {f}", file=out)
        status = 1
    if status == 0:
        print("campaign passed: no failure, every required label fired", file=out)
    return status


def _sum(parts: Any) -> Totals:
    total = Totals()
    for part in parts:
        total.examples += part.examples
        total.rules.update(part.rules)
        total.labels.update(part.labels)
    return total


def _table(total: Totals, elapsed: float, jobs: int) -> str:
    lines = [
        f"{total.examples} examples, {total.steps} steps in {elapsed:.0f} s on {jobs} "
        f"process(es): {total.steps / max(elapsed, 1e-9):.0f} steps/s",
        "",
        f"{'rule':40} {'calls':>10}",
    ]
    lines += [f"{name:40} {count:>10}" for name, count in sorted(total.rules.items())]
    lines += ["", f"{'label':52} {'fired':>10}"]
    names = sorted(set(total.labels) | set(REQUIRED_LABELS))
    for name in names:
        count = total.labels[name]
        flag = "  REQUIRED, NEVER FIRED" if name in REQUIRED_LABELS and count == 0 else ""
        mark = "*" if name in REQUIRED_LABELS else " "
        lines.append(f"{mark} {name:50} {count:>10}{flag}")
    lines.append("(* required: must fire at least once)")
    return "\n".join(lines)
