"""ArenaMachine on every available backend and both geometries.

Split by MIN_ALIGN so that ``-n auto`` has enough independent tests to keep every core
busy; each split is a distinct machine class with its own example-database key. The
implementation is the built-in arena unless ``--arenacheck-impl`` names another.
"""

from __future__ import annotations

import pytest
from arenacheck.backends.registry import host_backend
from arenacheck.harness.plugins import makes_os_calls_itself
from arenacheck.harness.runner import run_machine
from arenacheck.machines.arena import machine_for

MIN_ALIGN_SPLITS = {"align1-2": (1, 2), "align4-16": (4, 8, 16)}


@pytest.mark.parametrize("geometry_name", ["oxc", "small"])
@pytest.mark.parametrize("split", sorted(MIN_ALIGN_SPLITS))
def test_arena_machine(
    backend_name: str, geometry_name: str, split: str, arenacheck_impl: str | None
) -> None:
    own_calls = arenacheck_impl is not None and makes_os_calls_itself(arenacheck_impl)
    if own_calls and backend_name != host_backend():
        pytest.skip(
            f"{arenacheck_impl} makes its own OS calls, which only {host_backend()}'s "
            f"view shows, not {backend_name}'s"
        )
    machine = machine_for(
        backend_name, geometry_name, MIN_ALIGN_SPLITS[split], impl=arenacheck_impl
    )
    run_machine(machine, backend_name=backend_name)


@pytest.mark.parametrize("geometry_name", ["oxc", "small"])
def test_arena_machine_tight(backend_name: str, geometry_name: str) -> None:
    """The ``tight`` strategy: exactly the container reserved, at an aligned base."""
    machine = machine_for(
        backend_name, geometry_name, impl="arenacheck.impl.arena:Arena", strategy="tight"
    )
    run_machine(machine, backend_name=backend_name)
