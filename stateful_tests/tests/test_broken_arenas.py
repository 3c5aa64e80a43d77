"""The harness catches each deliberately broken arena, on every backend.

Each test runs ArenaMachine against a broken arena with a fixed budget and asserts that
Hypothesis reports a failure, and that the failure names the expected problem.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from arenacheck.backends.recording import FenceViolation
from arenacheck.faults.broken_arenas import BROKEN_ARENAS
from arenacheck.harness.runner import run_machine
from arenacheck.machines.arena import machine_for
from arenacheck.machines.oracle import Divergence
from hypothesis import Phase, settings
from hypothesis.errors import Flaky

# What the first failure must say (the message of the assertion that caught it).
EXPECTED = {
    "container-rounded-down": r"C is 0x|reaches outside the live reservations|OS calls",
    "unaligned-grow-commit": r"not page-granular|OS calls|model predicts|must fail as full",
    "second-free-calls-os": r"reaches outside the live reservations|second free was not refused",
}


def harness_failure(error: BaseException | None) -> BaseException | None:
    """The Divergence or FenceViolation behind ``error``.

    A bug that shows only for some reservation bases (the container rounded down is harmless
    when R happens to be aligned) makes the same program pass on one run and fail on the next,
    because the OS hands out other addresses: Hypothesis then reports it as flaky, with the
    harness's own failure inside.
    """
    seen: set[int] = set()
    stack = [error]
    while stack:
        e = stack.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, Divergence | FenceViolation):
            return e
        stack += [e.__cause__, e.__context__, *getattr(e, "exceptions", ())]
    return None


@pytest.mark.parametrize("geometry_name", ["small", "oxc"])
@pytest.mark.parametrize("broken", sorted(BROKEN_ARENAS))
def test_harness_catches(
    backend_name: str, geometry_name: str, broken: str, tmp_path: Path
) -> None:
    impl = f"arenacheck.faults.broken_arenas:{BROKEN_ARENAS[broken].__name__}"
    machine = machine_for(backend_name, geometry_name, impl=impl)
    # Detection is what is tested here; shrinking (tested with regression files) is skipped.
    budget = settings(
        settings.default,
        max_examples=1000,
        database=None,
        print_blob=False,
        phases=[Phase.generate],
    )
    with pytest.raises((Divergence, FenceViolation, Flaky)) as caught:
        run_machine(
            machine, backend_name=backend_name, run_settings=budget, write_failures_to=tmp_path
        )
    found = harness_failure(caught.value)
    assert found is not None, f"not a harness failure: {caught.value!r}"
    assert re.search(EXPECTED[broken], str(found)), str(found)
    assert len(list(tmp_path.glob("ArenaMachine-*.py"))) == 1, "no regression file written"


FENCED_IO = {
    "write": "WritesUncommittedThroughBackend",
    "read": "ReadsUncommittedThroughBackend",
}


@pytest.mark.parametrize("access", sorted(FENCED_IO))
def test_memory_touched_through_the_backend_outside_its_commits_is_fenced(
    backend_name: str, access: str, tmp_path: Path
) -> None:
    """A read or write through the backend of a page the arena never committed is refused
    before memory is touched (on a real kernel it would kill the worker), and the failure
    is a minimised program: it creates an arena and ends in the one allocation after which
    the access was made (shrinking across real addresses may leave a reset that does not
    matter, never another allocation)."""
    impl = f"arenacheck.faults.broken_arenas:{FENCED_IO[access]}"
    machine = machine_for(backend_name, "small", impl=impl)
    budget = settings(settings.default, max_examples=200, database=None, print_blob=False)
    with pytest.raises(FenceViolation, match=rf"^{access}\(0x[0-9a-f]+, 0x1\) reaches outside"):
        run_machine(
            machine, backend_name=backend_name, run_settings=budget, write_failures_to=tmp_path
        )
    (trace,) = tmp_path.glob("ArenaMachine-*.json")
    steps = [step["rule"] for step in json.loads(trace.read_text(encoding="utf-8"))["steps"]]
    assert steps[0] == "new_arena" and steps[-1] == "alloc", steps
    assert steps.count("alloc") == 1 and len(steps) <= 4, steps
