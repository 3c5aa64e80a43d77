"""Every seeded fault of the Rust arena is caught, by the check that should catch it.

Marked ``zoo`` and left out of the default run, as the Python zoo is: ``arenacheck zoo``
runs these same entries in CI, with the same expectations. Each runs as it does there
(``faults.zoo_runner.run_entry``): found under the ``ci`` profile, then shrunk, its
minimised program written and measured. The store to memory never committed comes back as
a failing program naming the signal that killed the child process, never as a dead worker.
Without rustc these skip with the reason, unless ARENACHECK_REQUIRE_RUST=1 (then they fail).
"""

from __future__ import annotations

import pytest
from arenacheck.backends.registry import unavailable_reason as backend_unavailable
from arenacheck.faults.broken_rust_arenas import NATIVE_ZOO, unavailable_reason
from arenacheck.faults.zoo_runner import expectation_missed, run_entry
from arenacheck.impl import rust_build

from stateful_tests.tests.native_flavours import REQUIRE_RUST_ENV, required


def test_every_fault_class_is_seeded_once_and_tested() -> None:
    seeded: set[str] = set()
    for entry in NATIVE_ZOO:
        faults: tuple[str, ...] = getattr(entry.arena, "faults", ())
        assert len(faults) == 1, entry
        seeded.add(faults[0])
    assert seeded == set(rust_build.FAULTS)
    assert all(e.caught_by and e.max_steps for e in NATIVE_ZOO)
    for entry in NATIVE_ZOO:
        doc = (entry.arena.__doc__ or "").strip()
        assert doc and "\n" not in doc, f"{entry.name}: docstring must be one line"


@pytest.mark.zoo
@pytest.mark.parametrize("entry", NATIVE_ZOO, ids=[e.name for e in NATIVE_ZOO])
def test_the_fault_is_caught_and_minimised(entry: object) -> None:
    from arenacheck.faults.zoo import ZooEntry

    assert isinstance(entry, ZooEntry)
    where = backend_unavailable(entry.backend)
    if where is not None:
        pytest.skip(f"the native zoo runs on {entry.backend}: {where}")
    reason = unavailable_reason(entry)
    if reason is not None:
        if required(REQUIRE_RUST_ENV):
            pytest.fail(f"{REQUIRE_RUST_ENV} is set, but {entry.name} cannot be built: {reason}")
        pytest.skip(f"{entry.name}: {reason}")
    result = run_entry(entry.name)
    assert result.caught, f"{entry.name} survived: {result.doc}"
    assert result.steps > 0, f"{entry.name} was found once but not again: {result}"
    assert expectation_missed(entry, result) is None, (expectation_missed(entry, result), result)
