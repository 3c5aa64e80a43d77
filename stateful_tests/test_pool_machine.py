"""PoolMachine on every available backend, both pool behaviours; the broken pools caught.

The machine tests run under the selected Hypothesis profile. Each broken-pool test runs the
machine against one broken pool with a fixed budget and asserts that Hypothesis reports a
failure that names the expected problem.
"""

from __future__ import annotations

import re

import pytest
from hypothesis import settings
from hypothesis.stateful import run_state_machine_as_test

from stateful_tests.arena_machine import Divergence
from stateful_tests.broken_pools import BROKEN_BEHAVIOURS, BROKEN_POOLS
from stateful_tests.pool_machine import pool_machine_for
from stateful_tests.recording import FenceViolation


@pytest.mark.parametrize("behaviour", ["posix", "windows"])
@pytest.mark.parametrize("geometry_name", ["small", "oxc"])
def test_pool_machine(backend_name: str, geometry_name: str, behaviour: str) -> None:
    run_state_machine_as_test(pool_machine_for(backend_name, geometry_name, behaviour))


# What the first failure must say (the message of the check that caught it).
EXPECTED = {
    "reset-to-footer": r"would overwrite the metadata|reaches the metadata",
    "lost-wakeup": r"lost wake-up",
    "reset-clears-ownership": r"is_double_owned|released although the other owner",
}

BROKEN_CASES = [(name, b) for name in sorted(BROKEN_POOLS) for b in BROKEN_BEHAVIOURS[name]]


@pytest.mark.parametrize(("broken", "behaviour"), BROKEN_CASES)
def test_harness_catches_broken_pool(backend_name: str, broken: str, behaviour: str) -> None:
    machine = pool_machine_for(backend_name, "small", behaviour, factory=BROKEN_POOLS[broken])
    budget = settings(settings.default, max_examples=1000, database=None, print_blob=False)
    with pytest.raises((Divergence, FenceViolation)) as caught:
        run_state_machine_as_test(machine, settings=budget)
    assert re.search(EXPECTED[broken], str(caught.value)), str(caught.value)
