"""The bug zoo as tests: ArenaMachine must catch every fault (``python -m pytest -m zoo``).

Marked ``zoo`` and left out of the default run, which ``arenacheck zoo`` covers in CI with
its table; each test runs one fault exactly as the command does.
"""

from __future__ import annotations

import pytest
from arenacheck.faults.zoo import ZOO
from arenacheck.faults.zoo_runner import run_entry


@pytest.mark.zoo
@pytest.mark.parametrize("name", [e.name for e in ZOO])
def test_zoo_fault_is_caught(name: str) -> None:
    result = run_entry(name)
    assert result.caught, f"{name} survived: {result.doc}"
    assert result.steps > 0, f"{name} was found once but not again: {result}"


def test_every_zoo_entry_names_its_bug_class() -> None:
    """One line each, naming the real-world bug class the fault stands for."""
    assert len(ZOO) >= 20
    for entry in ZOO:
        doc = (entry.arena.__doc__ or "").strip()
        assert doc and "\n" not in doc, f"{entry.name}: docstring must be one line"
    assert len({e.name for e in ZOO}) == len(ZOO)
