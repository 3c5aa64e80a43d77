"""Running the zoo: every fault against ArenaMachine, and the table of what caught it.

Each fault runs twice under the ``ci`` profile, without a database: once generating only,
timed, to measure how soon the harness finds it; then with every phase, to report the
length of the minimised program and the check that failed on it. Faults run in parallel
worker processes.
"""

from __future__ import annotations

import concurrent.futures
import json
import multiprocessing
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from hypothesis import Phase, settings

if TYPE_CHECKING:
    from arenacheck.faults.zoo import ZooEntry

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
    from arenacheck.backends.isolation import ChildCrashed
    from arenacheck.backends.recording import FenceViolation
    from arenacheck.machines.oracle import Divergence

    if isinstance(error, Divergence):
        return error.check or "divergence"
    if isinstance(error, FenceViolation):
        return "fence"
    if isinstance(error, ChildCrashed):
        return f"child died: {error.signal_name or 'no signal'}"
    return type(error).__name__


def all_entries() -> tuple[ZooEntry, ...]:
    """The Python zoo, then the native one."""
    from arenacheck.faults.broken_rust_arenas import NATIVE_ZOO
    from arenacheck.faults.zoo import ZOO

    return (*ZOO, *NATIVE_ZOO)


def run_entry(name: str) -> ZooResult:
    from arenacheck.backends.registry import standin_installed
    from arenacheck.harness.profiles import ensure_profiles_loaded
    from arenacheck.harness.runner import run_machine
    from arenacheck.machines.arena import machine_for

    ensure_profiles_loaded()
    entry = next(e for e in all_entries() if e.name == name)
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
    """Run every fault whose library can be had here; print the table; non-zero if any
    fault survived, or if a native fault could not run while ``$ARENACHECK_REQUIRE_RUST``
    asks for it."""
    from arenacheck.faults.broken_rust_arenas import unavailable_reason
    from arenacheck.impl.rust_build import REQUIRE_ENV as REQUIRE_RUST_ENV

    entries = all_entries()
    missing = {e.name: why for e in entries if (why := unavailable_reason(e)) is not None}
    start = time.monotonic()
    ctx = multiprocessing.get_context("spawn")
    # Not multiprocessing.Pool: its workers are daemons, which may not start the child
    # processes that native arenas run isolated in.
    with concurrent.futures.ProcessPoolExecutor(jobs, mp_context=ctx) as pool:
        names = [e.name for e in entries if e.name not in missing]
        results = list(pool.map(run_entry, names))
    elapsed = time.monotonic() - start
    print(format_table(results), file=out)
    by_name = {e.name: e for e in entries}
    survivors = [r.name for r in results if not r.caught or expectation_missed(by_name[r.name], r)]
    print(
        f"\n{len(results) - len(survivors)} of {len(results)} faults caught "
        f"in {elapsed:.0f} s on {jobs} processes",
        file=out,
    )
    for name, reason in missing.items():
        print(f"not run: {name}: {reason}", file=out)
    status = 0
    if survivors:
        print(f"FAILED: faults the harness did not catch: {', '.join(survivors)}", file=out)
        for r in results:
            missed = expectation_missed(by_name[r.name], r)
            if missed is not None:
                print(f"  {r.name}: {missed}", file=out)
        status = 1
    if missing and os.environ.get(REQUIRE_RUST_ENV, "").strip() not in ("", "0"):
        print(
            f"FAILED: {REQUIRE_RUST_ENV} is set, but {len(missing)} faults could not run", file=out
        )
        status = 1
    return status


def expectation_missed(entry: ZooEntry, result: ZooResult) -> str | None:
    """How a caught fault missed what its entry expects (the check, the program's length),
    or None."""
    if entry.caught_by and result.check not in entry.caught_by:
        return f"caught by {result.check}, not by {' or '.join(sorted(entry.caught_by))}"
    if entry.max_steps and not 0 < result.steps <= entry.max_steps:
        return f"minimised to {result.steps} steps, more than {entry.max_steps}"
    return None


def format_table(results: list[ZooResult]) -> str:
    head = (
        f"| {'fault':34} | {'backend':14} | caught | {'check that failed':32} | first (s) | steps |"
    )
    rule = "|" + "|".join("-" * (len(c)) for c in head.split("|")[1:-1]) + "|"
    rows = [head, rule]
    for r in results:
        rows.append(
            f"| {r.name:34} | {r.backend:14} | {'yes' if r.caught else 'NO':6} | {r.check:32} "
            f"| {r.seconds:9.1f} | {r.steps:5} |"
        )
    return "\n".join(rows)
