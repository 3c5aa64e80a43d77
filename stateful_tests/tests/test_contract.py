"""The contract table: every obligation's breaking plugin is caught by the obligation's check.

One test per row runs the row's machine (ArenaMachine or PoolMachine) against the row's
plugin on ``win32-emulated`` with a small budget, generating only (detection is what is
tested; shrinking is tested with regression files elsewhere), and asserts that the failure
is the row's check with the row's message. The table itself is checked too: ids unique,
plugins that resolve, and checks that exist.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import re

import pytest
from arenacheck.backends.registry import WIN32_EMULATED
from arenacheck.faults import contract_breakers
from arenacheck.faults.contract import CONTRACT, FENCE, Obligation
from arenacheck.faults.zoo_runner import check_name
from arenacheck.harness.runner import run_machine
from arenacheck.machines import arena, oracle, pool
from arenacheck.machines.arena import ArenaMachine, machine_for
from arenacheck.machines.pool import PoolMachine, pool_machine_for
from hypothesis import Phase, settings
from hypothesis.stateful import run_state_machine_as_test

from stateful_tests.tests.test_broken_arenas import harness_failure

ARENA_BUDGET = settings(
    settings.default,
    max_examples=300,
    database=None,
    print_blob=False,
    phases=[Phase.generate],
    deadline=None,
    # The same programs on every run: which check meets a breach first stays put.
    derandomize=True,
)
# Pool programs are slower per step and blocked threads make long ones costly.
POOL_BUDGET = settings(
    ARENA_BUDGET,
    max_examples=300,
    stateful_step_count=20,
    phases=[Phase.explicit, Phase.generate],
)


def resolve(spec: str) -> object:
    module_name, _, attr = spec.partition(":")
    return getattr(importlib.import_module(module_name), attr)


def run_row(row: Obligation) -> None:
    if row.subject == "arena":
        machine = machine_for(
            WIN32_EMULATED, "small", impl=row.plugin, commit_limit=row.commit_limit
        )
        run_machine(machine, backend_name=WIN32_EMULATED, run_settings=ARENA_BUDGET, record=False)
        return
    factory = resolve(row.plugin)
    assert callable(factory)
    pools = pool_machine_for(WIN32_EMULATED, "small", row.behaviour, factory=factory)
    run_state_machine_as_test(pools, settings=POOL_BUDGET)


# The emulated kernel needs the seam pointed at the stand-in, as ``backend_name`` does.
@pytest.mark.usefixtures("arenacheck_emulated_kernel32")
@pytest.mark.parametrize("backend_id", [WIN32_EMULATED], indirect=True)
@pytest.mark.parametrize("row", CONTRACT, ids=[row.id for row in CONTRACT])
def test_breaking_plugin_is_caught_by_its_check(backend_id: str, row: Obligation) -> None:
    # Whatever ends the run (a teardown may trip over what the breach left behind), the
    # harness's own failure must be behind it.
    with pytest.raises(Exception) as caught:
        run_row(row)
    found = harness_failure(caught.value)
    assert found is not None, f"{row.id}: not a harness failure: {caught.value!r}"
    assert check_name(found) in row.checks, (
        f"{row.id}: caught by {check_name(found)}, the table says {row.checks}: {found}"
    )
    assert re.search(row.message, str(found)), f"{row.id}: {found}"


def test_ids_are_unique() -> None:
    ids = [row.id for row in CONTRACT]
    assert len(set(ids)) == len(ids), sorted(i for i in ids if ids.count(i) > 1)


def test_every_plugin_resolves_to_a_subclass_of_the_built_in() -> None:
    from arenacheck.impl.arena import Arena
    from arenacheck.impl.pool import ArenaPool

    for row in CONTRACT:
        plugin = resolve(row.plugin)
        base = Arena if row.subject == "arena" else ArenaPool
        assert isinstance(plugin, type) and issubclass(plugin, base), row.id
        assert plugin is not base, row.id
        doc = (plugin.__doc__ or "").strip()
        assert doc, f"{row.id}: {row.plugin} has no docstring naming what it breaks"
        if plugin.__module__ == contract_breakers.__name__:
            assert "\n" not in doc, f"{row.id}: {row.plugin}'s docstring must be one line"


def raising_functions() -> set[str]:
    """The functions of the machines and the oracle that can name a failed check: each
    calls ``fail`` or ``expect``, or raises Divergence itself."""
    names: set[str] = set()
    for module in (arena, pool, oracle):
        for node in ast.walk(ast.parse(inspect.getsource(module))):
            if not isinstance(node, ast.FunctionDef):
                continue
            for call in ast.walk(node):
                if (
                    isinstance(call, ast.Call)
                    and isinstance(call.func, ast.Name | ast.Attribute)
                    and (getattr(call.func, "id", None) or getattr(call.func, "attr", None))
                    in ("fail", "expect", "Divergence", "expect_view", "expect_commit_charge")
                ):
                    names.add(node.name)
    return names


def test_every_check_exists_in_the_machines() -> None:
    """A check the table names is a function of a machine (or the oracle) that fails."""
    checks = raising_functions()
    for row in CONTRACT:
        machine = ArenaMachine if row.subject == "arena" else PoolMachine
        for check in row.checks:
            if check == FENCE:
                continue
            owner = getattr(machine, check, None) or getattr(oracle, check, None)
            assert callable(owner), f"{row.id}: no function {check} in {machine.__name__}"
            assert check in checks, f"{row.id}: {check} never reports a failure"


def test_every_subject_and_obligation_is_covered() -> None:
    subjects = {row.subject for row in CONTRACT}
    assert subjects == {"arena", "pool"}
    duties = {row.duty for row in CONTRACT}
    assert len(duties) == len(CONTRACT), "two rows state the same obligation"
