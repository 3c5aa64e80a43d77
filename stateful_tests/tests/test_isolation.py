"""Crash isolation: an implementation that crashes its process is an ordinary failure.

The broken arena ``WritesBelowStart`` touches uncommitted memory after every allocation.
Run in the same process it would kill the pytest worker; isolated in a child process, the
crash comes back as a failing example with its signal, shrunk to a minimal program, and the
run goes on.
"""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path

import pytest
from arenacheck.backends.isolation import ChildCrashed, death_of
from arenacheck.harness.runner import run_machine
from arenacheck.machines.arena import machine_for
from hypothesis import settings

BROKEN = "arenacheck.faults.broken_arenas:WritesBelowStart"


@pytest.mark.parametrize("backend_id", ["posix-native", "win32-emulated"], indirect=True)
def test_a_crash_is_a_minimised_failure_and_the_run_goes_on(
    backend_id: str, tmp_path: Path
) -> None:
    """A write to an uncommitted page: on POSIX the child dies of SIGSEGV (SIGBUS on some
    kernels); on Windows ctypes turns the access violation into an OSError in the child,
    which lives and hands it back. Either way a minimised program, and the run goes on."""
    backend = backend_id
    machine = machine_for(backend, "small", impl=BROKEN, isolated=True)
    budget = settings(settings.default, database=None, print_blob=False, max_examples=200)
    with pytest.raises((ChildCrashed, OSError)) as caught:
        run_machine(machine, backend_name=backend, run_settings=budget, write_failures_to=tmp_path)
    if sys.platform == "win32":
        assert type(caught.value) is OSError, caught.value
        assert "access violation writing" in str(caught.value), caught.value
    else:
        assert isinstance(caught.value, ChildCrashed), caught.value
        assert caught.value.signal_name in (signal.SIGSEGV.name, signal.SIGBUS.name)
        assert f"died with signal {caught.value.signal_name}" in str(caught.value)
    (trace,) = tmp_path.glob("*.json")
    steps = [s["rule"] for s in json.loads(trace.read_text())["steps"]]
    # Minimal is new_arena then alloc; shrinking across process crashes may leave a few
    # steps that do not matter (resets), never another allocation.
    assert steps[0] == "new_arena" and steps[-1] == "alloc" and steps.count("alloc") == 1, steps
    assert len(steps) <= 8, steps


@pytest.mark.parametrize("backend_id", ["posix-native", "win32-emulated"], indirect=True)
def test_isolated_machine_passes_on_the_correct_arena(backend_id: str) -> None:
    run_machine(machine_for(backend_id, "small", isolated=True), backend_name=backend_id)


def test_a_death_is_named_by_its_signal_or_its_ntstatus() -> None:
    if sys.platform == "win32":
        assert death_of(0xC0000005) == (
            "STATUS_ACCESS_VIOLATION",
            "STATUS_ACCESS_VIOLATION (0xc0000005)",
        )
    else:
        assert death_of(-signal.SIGSEGV) == ("SIGSEGV", "signal SIGSEGV")
        assert death_of(0xC0000005) == ("", f"exit status {0xC0000005}")
    assert death_of(3) == ("", "exit status 3")
