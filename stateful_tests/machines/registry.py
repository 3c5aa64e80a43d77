"""Every machine kind by name, and how to rebuild a configured machine from plain data.

A regression file stores a machine as ``{"machine": KIND, ...config}``; ``build`` turns that
back into a class for any backend.
"""

from __future__ import annotations

import re
from typing import Any

from arenacheck.backends.registry import family
from arenacheck.machines.arena import ArenaMachine, FaultMachine, machine_for
from arenacheck.machines.pool import PoolMachine, pool_machine_for
from arenacheck.machines.vm_posix import PosixVMMachine
from arenacheck.machines.vm_windows import WindowsVMMachine
from hypothesis.stateful import RuleBasedStateMachine

VM_MACHINES: dict[str, type[RuleBasedStateMachine]] = {
    "WindowsVMMachine": WindowsVMMachine,
    "PosixVMMachine": PosixVMMachine,
}


def vm_machine_for(backend_name: str, geometry_name: str) -> type[RuleBasedStateMachine]:
    """The VM machine of the backend's OS family, configured."""
    base = WindowsVMMachine if family(backend_name) == "windows" else PosixVMMachine
    name = re.sub(r"\W", "_", f"{base.__name__}_{backend_name}_{geometry_name}")
    return type(name, (base,), {"backend_name": backend_name, "geometry_name": geometry_name})


def config_of(machine: type[RuleBasedStateMachine]) -> dict[str, Any]:
    """The plain-data configuration a regression file records."""
    attrs: Any = machine
    if issubclass(machine, PoolMachine):
        return {
            "machine": "PoolMachine",
            "geometry": machine.geometry_name,
            "behaviour": machine.behaviour,
        }
    if issubclass(machine, ArenaMachine):
        return {
            "machine": "ArenaMachine",
            "geometry": machine.geometry_name,
            "min_aligns": list(machine.min_aligns),
            "impl": machine.arena_impl,
            "commit_limit": machine.commit_limit,
            "faults": issubclass(machine, FaultMachine),
            "isolated": machine.isolated,
            "strategy": machine.strategy,
        }
    for kind, base in VM_MACHINES.items():
        if issubclass(machine, base):
            return {"machine": kind, "geometry": attrs.geometry_name}
    raise ValueError(f"{machine.__name__} is not a machine arenacheck knows how to record")


def build(
    config: dict[str, Any], backend_name: str, impl: str | None = None
) -> type[RuleBasedStateMachine]:
    """The configured machine class for ``backend_name``; ``impl`` overrides the recorded one."""
    kind = config["machine"]
    if kind == "ArenaMachine":
        return machine_for(
            backend_name,
            config["geometry"],
            tuple(config["min_aligns"]),
            impl=impl or config.get("impl"),
            commit_limit=config.get("commit_limit"),
            faults=bool(config.get("faults")),
            isolated=bool(config.get("isolated")),
            strategy=config.get("strategy", "reserve-commit"),
        )
    if kind == "PoolMachine":
        return pool_machine_for(backend_name, config["geometry"], config["behaviour"])
    if kind in VM_MACHINES:
        if (kind == "WindowsVMMachine") != (family(backend_name) == "windows"):
            raise ValueError(f"{kind} cannot run on {backend_name}")
        return vm_machine_for(backend_name, config["geometry"])
    raise ValueError(f"unknown machine kind {kind!r}")
