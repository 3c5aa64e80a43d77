"""Fixtures shared by this test suite's modules (the plugin's fixtures serve every user)."""

from __future__ import annotations

import pytest

from stateful_tests.backends import WIN32_WINE
from stateful_tests.pytest_plugin import selected_backends, skip_unless_available


@pytest.fixture
def wine(request: pytest.FixtureRequest) -> str:
    """win32-wine, skipped or failed as the ``backend_name`` fixture would treat it."""
    if WIN32_WINE not in selected_backends(request.config):
        pytest.skip("win32-wine is not among the selected backends")
    skip_unless_available(WIN32_WINE)
    return WIN32_WINE
