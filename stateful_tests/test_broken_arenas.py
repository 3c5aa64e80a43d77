"""The harness catches each deliberately broken arena, on every backend.

Each test runs ArenaMachine against a broken arena with a fixed budget and asserts that
Hypothesis reports a failure, and that the failure names the expected problem.
"""

from __future__ import annotations

import re

import pytest
from hypothesis import settings
from hypothesis.stateful import run_state_machine_as_test

from stateful_tests.arena_machine import Divergence, machine_for
from stateful_tests.broken_arenas import BROKEN_ARENAS, factory
from stateful_tests.recording import FenceViolation

# What the first failure must say (the message of the assertion that caught it).
EXPECTED = {
    "container-rounded-down": r"C is 0x|reaches outside the live reservations|OS calls",
    "unaligned-grow-commit": r"not page-granular|OS calls|model predicts|must fail as full",
    "second-free-calls-os": r"reaches outside the live reservations",
}


@pytest.mark.parametrize("geometry_name", ["small", "oxc"])
@pytest.mark.parametrize("broken", sorted(BROKEN_ARENAS))
def test_harness_catches(backend_name: str, geometry_name: str, broken: str) -> None:
    machine = machine_for(
        backend_name,
        geometry_name,
        factory=factory(BROKEN_ARENAS[broken]),  # type: ignore[arg-type]
    )
    budget = settings(settings.default, max_examples=1000, database=None, print_blob=False)
    with pytest.raises((Divergence, FenceViolation)) as caught:
        run_state_machine_as_test(machine, settings=budget)
    assert re.search(EXPECTED[broken], str(caught.value)), str(caught.value)
