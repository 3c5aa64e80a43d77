"""Running the zoo: every fault against ArenaMachine, and the table of what caught it.

Each fault runs twice under the ``ci`` profile, without a database: once generating only,
timed, to measure how soon the harness finds it; then with every phase, to report the
length of the minimised program and the check that failed on it. Faults run in parallel
worker processes.
"""

from __future__ import annotations

import json
import multiprocessing
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from hypothesis import Phase, settings

PHASES_FIND = (Phase.generate,)


@dataclass(frozen=True)
class ZooResult:
    name: str
    backend: str
    caught: bool
    check: str
    seconds: float
    steps: int
    doc: str
    detail: str = ""


def check_name(error: BaseException) -> str:
    from arenacheck.backends.recording import FenceViolation
    from arenacheck.machines.oracle import Divergence

    if isinstance(error, Divergence):
        return error.check or "divergence"
    if isinstance(error, FenceViolation):
        return "fence"
    return type(error).__name__


def run_entry(name: str) -> ZooResult:
    from arenacheck.backends.registry import standin_installed
    from arenacheck.faults.zoo import ZOO
    from arenacheck.harness.profiles import ensure_profiles_loaded
    from arenacheck.harness.runner import run_machine
    from arenacheck.machines.arena import machine_for

    ensure_profiles_loaded()
    entry = next(e for e in ZOO if e.name == name)
    machine = machine_for(
        entry.backend, entry.geometry, impl=entry.impl, commit_limit=entry.commit_limit
    )
    ci = settings.get_profile("arenacheck-ci")
    found = settings(ci, database=None, phases=PHASES_FIND, print_blob=False)
    shrink = settings(ci, database=None, print_blob=False)
    with tempfile.TemporaryDirectory() as tmp, standin_installed():
        start = time.monotonic()
        try:
            run_machine(machine, backend_name=entry.backend, run_settings=found, record=False)
        except Exception:
            seconds = time.monotonic() - start
        else:
            return ZooResult(
                name, entry.backend, False, "-", time.monotonic() - start, 0, entry.doc
            )
        try:
            run_machine(
                machine,
                backend_name=entry.backend,
                run_settings=shrink,
                write_failures_to=Path(tmp),
            )
        except Exception as error:
            (program,) = Path(tmp).glob("*.json")
            steps = len(json.loads(program.read_text())["steps"])
            first = str(error).splitlines()[0] if str(error) else ""
            return ZooResult(
                name, entry.backend, True, check_name(error), seconds, steps, entry.doc, first
            )
        # Found once, then not in the full run: a fault that depends on the OS's addresses.
        return ZooResult(name, entry.backend, True, "found once, not again", seconds, 0, entry.doc)


def run_zoo(jobs: int = 2, out: TextIO = sys.stdout) -> int:
    """Run every fault; print the table; non-zero if any fault survived."""
    from arenacheck.faults.zoo import ZOO

    start = time.monotonic()
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(jobs) as pool:
        results = pool.map(run_entry, [e.name for e in ZOO], chunksize=1)
    elapsed = time.monotonic() - start
    print(format_table(results), file=out)
    survivors = [r.name for r in results if not r.caught]
    print(
        f"\n{len(results) - len(survivors)} of {len(results)} faults caught "
        f"in {elapsed:.0f} s on {jobs} processes",
        file=out,
    )
    if survivors:
        print(f"FAILED: faults the harness did not catch: {', '.join(survivors)}", file=out)
        return 1
    return 0


def format_table(results: list[ZooResult]) -> str:
    head = (
        f"| {'fault':26} | {'backend':14} | caught | {'check that failed':30} | first (s) | steps |"
    )
    rule = "|" + "|".join("-" * (len(c)) for c in head.split("|")[1:-1]) + "|"
    rows = [head, rule]
    for r in results:
        rows.append(
            f"| {r.name:26} | {r.backend:14} | {'yes' if r.caught else 'NO':6} | {r.check:30} "
            f"| {r.seconds:9.1f} | {r.steps:5} |"
        )
    return "\n".join(rows)
