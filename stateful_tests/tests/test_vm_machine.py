"""The VM machines: each backend's raw calls held to its OS model, per geometry."""

from __future__ import annotations

import pytest
from arenacheck.harness.runner import run_machine
from arenacheck.machines.registry import vm_machine_for


@pytest.mark.parametrize("geometry_name", ["oxc", "small"])
def test_vm_machine(backend_name: str, geometry_name: str) -> None:
    run_machine(vm_machine_for(backend_name, geometry_name), backend_name=backend_name)
