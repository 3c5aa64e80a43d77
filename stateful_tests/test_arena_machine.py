"""ArenaMachine on every available backend and both geometries.

Split by MIN_ALIGN so that ``-n auto`` has enough independent tests to keep every core
busy; each split is a distinct machine class with its own example-database key.
"""

from __future__ import annotations

import pytest
from hypothesis.stateful import run_state_machine_as_test

from stateful_tests.arena_machine import machine_for

MIN_ALIGN_SPLITS = {"align1-2": (1, 2), "align4-16": (4, 8, 16)}


@pytest.mark.parametrize("geometry_name", ["oxc", "small"])
@pytest.mark.parametrize("split", sorted(MIN_ALIGN_SPLITS))
def test_arena_machine(backend_name: str, geometry_name: str, split: str) -> None:
    machine = machine_for(backend_name, geometry_name, MIN_ALIGN_SPLITS[split])
    run_state_machine_as_test(machine)
