"""Hypothesis profiles, every setting explicit so nothing is inherited by accident.

Hypothesis ships its own ``ci`` profile (database off, derandomised); registering ours
under the same name replaces it, and spelling out every setting keeps a later Hypothesis
default from changing what a run means.
"""

from __future__ import annotations

import os
from pathlib import Path

from hypothesis import HealthCheck, Phase, Verbosity, settings
from hypothesis.database import DirectoryBasedExampleDatabase

PROFILE_ENV = "ARENACHECK_PROFILE"
DEFAULT_PROFILE = "dev"
DATABASE_DIR = Path(__file__).resolve().parent.parent / ".hypothesis" / "examples"

_ALL_PHASES = (Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink)
# Real OS calls make examples slow by Hypothesis's standards; slowness is reported by the
# benchmark, never by a health check that fails the suite.
_SUPPRESSED = (HealthCheck.too_slow, HealthCheck.data_too_large)


def _profile(max_examples: int, steps: int) -> settings:
    # derandomize stays off: Hypothesis forbids it together with a database, and the
    # database is what lets a failure found once be replayed.
    return settings(
        max_examples=max_examples,
        stateful_step_count=steps,
        deadline=None,
        derandomize=False,
        database=DirectoryBasedExampleDatabase(str(DATABASE_DIR)),
        print_blob=True,
        report_multiple_bugs=False,
        phases=_ALL_PHASES,
        suppress_health_check=_SUPPRESSED,
        verbosity=Verbosity.normal,
    )


def register_profiles() -> None:
    settings.register_profile("dev", _profile(max_examples=100, steps=50))
    settings.register_profile("ci", _profile(max_examples=300, steps=50))


def load_selected_profile() -> str:
    """Load the profile named by ARENACHECK_PROFILE (default ``dev``); returns its name."""
    name = os.environ.get(PROFILE_ENV, DEFAULT_PROFILE)
    settings.load_profile(name)
    return name
