"""Running a machine: the seed a profile asks for, and a regression file for every failure.

``run_machine`` is what every machine test calls instead of ``run_state_machine_as_test``.
When the machine fails, the last example Hypothesis ran is the minimised one it reports, so
that instance's trace is written out as a regression file pair (``.py`` and ``.json``) before
the failure propagates. In an xdist worker each example's start, and each step's, is also
kept by the flight recorder (``arenacheck.record.flight``), for a crash that kills the worker.
"""

from __future__ import annotations

import os
import zlib
from pathlib import Path
from typing import Any

from arenacheck.harness.profiles import (
    DETERMINISTIC_PROFILES,
    arenacheck_settings,
    selected_profile_name,
)
from arenacheck.record import flight
from arenacheck.record.regression import write_regression
from hypothesis import seed, settings
from hypothesis.stateful import RuleBasedStateMachine, run_state_machine_as_test

FAILURES_ENV = "ARENACHECK_FAILURES_DIR"
DEFAULT_FAILURES_DIR = Path("failures")


def add_note(error: BaseException, note: str) -> None:
    """``BaseException.add_note`` where it exists (3.11+), its effect by hand before that."""
    notes = list(getattr(error, "__notes__", []))
    notes.append(note)
    setattr(error, "__notes__", notes)  # noqa: B010 - typeshed lacks it before 3.11


def failures_dir() -> Path:
    return Path(os.environ.get(FAILURES_ENV, DEFAULT_FAILURES_DIR))


def stable_seed(machine: type[RuleBasedStateMachine]) -> int:
    """A seed fixed per machine configuration, for the deterministic profiles."""
    return zlib.crc32(machine.__name__.encode())


def run_machine(
    machine: type[RuleBasedStateMachine],
    *,
    backend_name: str,
    run_settings: settings | None = None,
    write_failures_to: Path | None = None,
    record: bool = True,
) -> None:
    """Run ``machine`` under Hypothesis (``run_settings``, else the selected arenacheck
    profile); on failure write a regression file, then re-raise."""
    last: list[RuleBasedStateMachine] = []
    failures = write_failures_to or failures_dir()

    def init(self: Any) -> None:
        # Before the machine's own setup, which opens the backend and may crash too.
        flight.begin(self, failures, regression=record)
        machine.__init__(self)
        last[:] = [self]

    # Same name as the machine: Hypothesis keys its example database by the class name.
    recorder: type[RuleBasedStateMachine] = type(machine.__name__, (machine,), {"__init__": init})
    recorder.__module__ = machine.__module__
    if selected_profile_name() in DETERMINISTIC_PROFILES:
        recorder = seed(stable_seed(machine))(recorder)
    try:
        run_state_machine_as_test(recorder, settings=run_settings or arenacheck_settings())
    except BaseException as error:
        if record and last and not isinstance(error, KeyboardInterrupt):
            steps = getattr(last[0], "trace", [])
            paths = write_regression(machine, backend_name, steps, error, failures)
            add_note(error, f"regression files: {paths[0]} and {paths[1]}")
        raise
    finally:
        # The run is over with the worker alive: nothing left for a crash report to name.
        flight.forget()
