"""Fixtures shared by this test suite's modules (the plugin's fixtures serve every user)."""

from __future__ import annotations

import sys

import pytest
from arenacheck.backends.registry import WIN32_WINE
from arenacheck.harness.pytest_plugin import selected_backends, skip_unless_available


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """``@pytest.mark.linux_only("what the test needs")``: skipped elsewhere, saying why."""
    for item in items:
        for marker in item.iter_markers(name="linux_only"):
            if len(marker.args) != 1 or not isinstance(marker.args[0], str) or marker.kwargs:
                raise pytest.UsageError(
                    f"{item.nodeid}: linux_only takes one string, what the test needs from Linux"
                )
            if sys.platform != "linux":
                reason = f"Linux only: needs {marker.args[0]}; this is {sys.platform}"
                item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture
def backend_name(arenacheck_backend: str) -> str:
    """The plugin's ``arenacheck_backend`` under the shorter name this suite uses."""
    return arenacheck_backend


def use_backend(request: pytest.FixtureRequest, name: str) -> str:
    """``name``, skipped or failed as the ``backend_name`` fixture would treat it."""
    if name not in selected_backends(request.config):
        pytest.skip(f"{name} is not among the selected backends")
    skip_unless_available(name)
    return name


@pytest.fixture
def wine(request: pytest.FixtureRequest) -> str:
    """win32-wine, skipped or failed as the ``backend_name`` fixture would treat it."""
    return use_backend(request, WIN32_WINE)


@pytest.fixture
def backend_id(request: pytest.FixtureRequest) -> str:
    """A backend a test names in its own parameters (``indirect=["backend_id"]``), for tests
    whose other parameters depend on it; skipped or failed as ``backend_name`` would be."""
    return use_backend(request, request.param)
