"""Tests that commit gigabytes share one xdist worker, so on Windows (which charges commit at
``MEM_COMMIT``, across every worker) their charges never add up: the grouping must really
happen. pytest 9.2 with pytest-xdist 3.8 drops ``xdist_group`` under ``--dist loadgroup``
without a word (pytest-xdist issue 1386), which this test turns into a failure."""

from __future__ import annotations

import os

import pytest

GROUP = "commit-heavy"


@pytest.mark.xdist_group(GROUP)
def test_a_grouped_test_is_scheduled_by_its_group(request: pytest.FixtureRequest) -> None:
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        pytest.skip("not under pytest-xdist (-n): there is no other worker to keep it from")
    # loadgroup names a grouped test by its group; a test scheduled alone keeps its own id.
    assert request.node.nodeid.endswith(f"@{GROUP}"), request.node.nodeid
