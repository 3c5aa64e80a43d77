"""The VM machines: each backend's raw calls held to its OS model, per geometry."""

from __future__ import annotations

import pytest
from hypothesis.stateful import RuleBasedStateMachine, run_state_machine_as_test

from stateful_tests.backends import family
from stateful_tests.vm_machine_posix import PosixVMMachine
from stateful_tests.vm_machine_windows import WindowsVMMachine


@pytest.mark.parametrize("geometry_name", ["oxc", "small"])
def test_vm_machine(backend_name: str, geometry_name: str) -> None:
    base: type[RuleBasedStateMachine] = (
        WindowsVMMachine if family(backend_name) == "windows" else PosixVMMachine
    )
    name = f"{base.__name__}_{backend_name}_{geometry_name}".replace("-", "_")
    machine = type(name, (base,), {"backend_name": backend_name, "geometry_name": geometry_name})
    run_state_machine_as_test(machine)
