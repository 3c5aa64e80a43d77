"""Crash isolation: an implementation that crashes its process is an ordinary failure.

The broken arena ``WritesBelowStart`` touches uncommitted memory after every allocation.
Run in the same process it would kill the pytest worker; isolated in a child process, the
crash comes back as a failing example with its signal, shrunk to a minimal program, and the
run goes on.
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest
from hypothesis import settings

from stateful_tests.arena_machine import machine_for
from stateful_tests.isolation import ChildCrashed
from stateful_tests.runner import run_machine

BROKEN = "stateful_tests.broken_arenas:WritesBelowStart"


@pytest.mark.skipif(os.name != "posix", reason="the crash is a SIGSEGV from a PROT_NONE page")
@pytest.mark.parametrize("backend", ["posix-native", "win32-emulated"])
def test_a_crash_is_a_minimised_failure_and_the_run_goes_on(backend: str, tmp_path: Path) -> None:
    machine = machine_for(backend, "small", impl=BROKEN, isolated=True)
    budget = settings(settings.default, database=None, print_blob=False, max_examples=200)
    with pytest.raises(ChildCrashed) as caught:
        run_machine(machine, backend_name=backend, run_settings=budget, write_failures_to=tmp_path)
    assert caught.value.signal_name in (signal.SIGSEGV.name, signal.SIGBUS.name), caught.value
    assert "died with signal" in str(caught.value)
    (trace,) = tmp_path.glob("*.json")
    steps = [s["rule"] for s in json.loads(trace.read_text())["steps"]]
    # Minimal is new_arena then alloc; shrinking across process crashes may leave a few
    # steps that do not matter (resets), never another allocation.
    assert steps[0] == "new_arena" and steps[-1] == "alloc" and steps.count("alloc") == 1, steps
    assert len(steps) <= 8, steps


@pytest.mark.parametrize("backend_id", ["posix-native", "win32-emulated"], indirect=True)
def test_isolated_machine_passes_on_the_correct_arena(backend_id: str) -> None:
    run_machine(machine_for(backend_id, "small", isolated=True), backend_name=backend_id)
