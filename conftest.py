"""Root pytest configuration.

Hypothesis profiles are registered and loaded here, before any test module (and so any
state machine) is imported, so every machine runs under the selected profile. Options and
fixtures live in ``stateful_tests.pytest_plugin``, which the installed package registers as
a pytest plugin; without an install it is loaded from here.
"""

from __future__ import annotations

from importlib.metadata import entry_points

from stateful_tests.profiles import ensure_profiles_loaded

ensure_profiles_loaded()

if not any(ep.name == "arenacheck" for ep in entry_points(group="pytest11")):
    pytest_plugins = ["stateful_tests.pytest_plugin"]
