"""Root pytest configuration of arenacheck's own test run.

arenacheck's Hypothesis profile is made this run's default here (at configuration, before
any test module, and so any state machine, is imported); installed elsewhere, the plugin
loads no profile. Options and fixtures live in ``arenacheck.harness.pytest_plugin``, which
the installed package registers as a pytest plugin; without an install it is loaded here.
"""

from __future__ import annotations

from importlib.metadata import entry_points

import pytest
from arenacheck.harness.profiles import ensure_profiles_loaded, set_project_root


def pytest_configure(config: pytest.Config) -> None:
    # Before collection imports any test module; the root first, so the example database
    # is this repository's .hypothesis/ wherever pytest was started.
    set_project_root(config.rootpath)
    ensure_profiles_loaded()


if not any(ep.name == "arenacheck" for ep in entry_points(group="pytest11")):
    pytest_plugins = ["arenacheck.harness.pytest_plugin"]
