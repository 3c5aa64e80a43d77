"""Hypothesis profiles and the example database, every setting explicit.

Hypothesis ships its own ``ci`` profile (database off, derandomised); registering ours under
the same name replaces it, and spelling out every setting keeps a later Hypothesis default
from changing what a run means.

| profile   | purpose                                                                 |
|-----------|-------------------------------------------------------------------------|
| dev       | the default: a quick, randomised run                                     |
| ci        | deterministic (a fixed seed per machine) with the database on           |
| nightly   | thousands of examples and longer programs                               |
| replay    | only the explicit and reuse phases: replays what the database holds     |

The database is the local ``.hypothesis/examples`` directory (``ARENACHECK_DATABASE_DIR``
moves it), which is safe under xdist (atomic renames), unless ``ARENACHECK_DATABASE`` says
otherwise:
``redis://host:port/N`` shares examples through a Redis server, and
``github-artifact:OWNER/REPO/ARTIFACT`` also reads failures uploaded by earlier CI runs
(read-only); either is combined with the local directory.
"""

from __future__ import annotations

import os
from pathlib import Path

from hypothesis import HealthCheck, Phase, Verbosity, settings
from hypothesis.database import (
    DirectoryBasedExampleDatabase,
    ExampleDatabase,
    GitHubArtifactDatabase,
    MultiplexedDatabase,
    ReadOnlyDatabase,
)

PROFILE_ENV = "ARENACHECK_PROFILE"
DATABASE_ENV = "ARENACHECK_DATABASE"
DATABASE_DIR_ENV = "ARENACHECK_DATABASE_DIR"
DEFAULT_PROFILE = "dev"
PROFILES = ("dev", "ci", "nightly", "replay")
DETERMINISTIC_PROFILES = frozenset({"ci"})
DATABASE_DIR = Path(__file__).resolve().parent.parent / ".hypothesis" / "examples"

_ALL_PHASES = (Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink)
_REPLAY_PHASES = (Phase.explicit, Phase.reuse)
# Real OS calls make examples slow by Hypothesis's standards; speed is the benchmark's
# business, never a health check that fails the suite.
_SUPPRESSED = (HealthCheck.too_slow, HealthCheck.data_too_large)


class DatabaseConfigError(ValueError):
    """An ARENACHECK_DATABASE value arenacheck does not understand."""


def database_from(spec: str | None, local_dir: Path = DATABASE_DIR) -> ExampleDatabase:
    """The example database a spec names (None or empty: the local directory only)."""
    local = DirectoryBasedExampleDatabase(str(local_dir))
    if not spec:
        return local
    if spec.startswith("redis://"):
        try:
            import redis
            from hypothesis.extra.redis import RedisExampleDatabase
        except ImportError as e:
            raise DatabaseConfigError(
                f"{DATABASE_ENV}={spec} needs the 'redis' package: pip install redis"
            ) from e
        return MultiplexedDatabase(local, RedisExampleDatabase(redis.Redis.from_url(spec)))
    if spec.startswith("github-artifact:"):
        parts = spec.removeprefix("github-artifact:").split("/")
        if len(parts) != 3 or not all(parts):
            raise DatabaseConfigError(
                f"{DATABASE_ENV}={spec}: expected github-artifact:OWNER/REPO/ARTIFACT"
            )
        owner, repo, artifact = parts
        remote = GitHubArtifactDatabase(owner, repo, artifact_name=artifact)
        return MultiplexedDatabase(local, ReadOnlyDatabase(remote))
    raise DatabaseConfigError(
        f"{DATABASE_ENV}={spec!r}: expected redis://host:port/N or github-artifact:OWNER/REPO/NAME"
    )


def _profile(
    database: ExampleDatabase, max_examples: int, steps: int, replay: bool = False
) -> settings:
    # derandomize stays off: Hypothesis forbids it together with a database; the ci
    # profile gets its determinism from a fixed seed per machine instead (runner.py).
    return settings(
        max_examples=max_examples,
        stateful_step_count=steps,
        deadline=None,
        derandomize=False,
        database=database,
        print_blob=True,
        report_multiple_bugs=False,
        phases=_REPLAY_PHASES if replay else _ALL_PHASES,
        suppress_health_check=_SUPPRESSED,
        verbosity=Verbosity.normal,
    )


def local_database_dir() -> Path:
    """The local example database: ARENACHECK_DATABASE_DIR, else ``.hypothesis/examples``."""
    return Path(os.environ.get(DATABASE_DIR_ENV) or DATABASE_DIR)


def register_profiles(database_spec: str | None = None) -> None:
    """Register every profile; the database comes from ``database_spec`` or the environment."""
    spec = database_spec if database_spec is not None else os.environ.get(DATABASE_ENV)
    db = database_from(spec, local_database_dir())
    settings.register_profile("dev", _profile(db, max_examples=100, steps=50))
    settings.register_profile("ci", _profile(db, max_examples=300, steps=50))
    settings.register_profile("nightly", _profile(db, max_examples=5000, steps=200))
    settings.register_profile("replay", _profile(db, max_examples=100, steps=50, replay=True))


def load_selected_profile() -> str:
    """Load the profile named by ARENACHECK_PROFILE (default ``dev``); returns its name."""
    name = os.environ.get(PROFILE_ENV, DEFAULT_PROFILE)
    if name not in PROFILES:
        raise ValueError(f"{PROFILE_ENV}={name!r}: known profiles are {', '.join(PROFILES)}")
    settings.load_profile(name)
    return name


def current_profile_name() -> str:
    return settings.get_current_profile_name()


_LOADED: list[str] = []


def ensure_profiles_loaded() -> str:
    """Register the profiles and load the selected one, once per process."""
    if not _LOADED:
        register_profiles()
        _LOADED.append(load_selected_profile())
    return _LOADED[0]
