"""Hypothesis profiles and the example database, every setting explicit.

The profiles are registered under arenacheck's own names, so a project's ``dev`` or ``ci``
profile is never touched, and nothing is registered or loaded until arenacheck is used:
``arenacheck_settings()`` (what ``run_machine`` runs under) registers them on first use
without loading any, and only ``ensure_profiles_loaded()`` (this repository's own
``conftest.py`` and arenacheck's commands) makes one the process's default. Spelling out
every setting keeps a later Hypothesis default from changing what a run means.

| profile              | purpose                                                      |
|----------------------|--------------------------------------------------------------|
| arenacheck-dev       | the default: a quick, randomised run                         |
| arenacheck-ci        | deterministic (a fixed seed per machine) with the database on |
| arenacheck-nightly   | thousands of examples and longer programs                    |
| arenacheck-replay    | only the explicit and reuse phases: replays what the database holds |

``ARENACHECK_PROFILE`` selects one by its short name (``ci``) or its full one. The database
is the invoking project's ``.hypothesis/examples`` (the pytest root, else the working
directory; ``ARENACHECK_DATABASE_DIR`` moves it), which is safe under xdist (atomic
renames), unless ``ARENACHECK_DATABASE`` says otherwise: ``redis://host:port/N`` shares
examples through a Redis server (the ``redis`` extra), and
``github-artifact:OWNER/REPO/ARTIFACT`` also reads failures uploaded by earlier CI runs
(read-only); either is combined with the local directory.
"""

from __future__ import annotations

import os
import sys
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
PREFIX = "arenacheck-"
DEFAULT_PROFILE = "dev"
PROFILES = ("dev", "ci", "nightly", "replay")
DETERMINISTIC_PROFILES = frozenset({"ci"})
DATABASE_SUBDIR = Path(".hypothesis") / "examples"

_ALL_PHASES = (Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink)
_REPLAY_PHASES = (Phase.explicit, Phase.reuse)
# Real OS calls make examples slow by Hypothesis's standards; speed is the benchmark's
# business, never a health check that fails the suite.
_SUPPRESSED = (HealthCheck.too_slow, HealthCheck.data_too_large)


class DatabaseConfigError(ValueError):
    """An ARENACHECK_DATABASE value arenacheck does not understand."""


def database_from(spec: str | None, local_dir: Path) -> ExampleDatabase:
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
                f"{DATABASE_ENV}={spec} needs the 'redis' package: pip install 'arenacheck[redis]'"
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
    # Hypothesis's own defaults are the parent, not the profile the project loaded: a
    # setting left out here must not come from the project (its ``backend``, say).
    return settings(
        settings.get_profile("default"),
        backend="hypothesis",
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


_PROJECT_ROOT: list[Path] = []
PLUGIN_MODULE = "arenacheck.harness.pytest_plugin"


def set_project_root(root: Path) -> None:
    """The invoking project's root, which holds its ``.hypothesis/``; under pytest the
    rootdir of the run in progress serves without this."""
    _PROJECT_ROOT[:] = [root]


def project_root() -> Path:
    """The root set here, else the rootdir of the pytest session running in this process
    (with arenacheck's plugin loaded), else the working directory."""
    if _PROJECT_ROOT:
        return _PROJECT_ROOT[0]
    # Looked up, not imported: outside pytest neither pytest nor the plugin gets loaded.
    plugin = sys.modules.get(PLUGIN_MODULE)
    root = getattr(plugin, "session_root", lambda: None)()
    return root if isinstance(root, Path) else Path.cwd()


def local_database_dir() -> Path:
    """ARENACHECK_DATABASE_DIR, else ``.hypothesis/examples`` of the invoking project."""
    chosen = os.environ.get(DATABASE_DIR_ENV)
    if chosen:
        return Path(chosen)
    return project_root() / DATABASE_SUBDIR


def register_profiles(database_spec: str | None = None) -> None:
    """Register every profile under its ``arenacheck-`` name; loads none. The database comes
    from ``database_spec`` or the environment."""
    spec = database_spec if database_spec is not None else os.environ.get(DATABASE_ENV)
    db = database_from(spec, local_database_dir())
    settings.register_profile(PREFIX + "dev", _profile(db, max_examples=100, steps=50))
    settings.register_profile(PREFIX + "ci", _profile(db, max_examples=300, steps=50))
    settings.register_profile(PREFIX + "nightly", _profile(db, max_examples=5000, steps=200))
    replay = _profile(db, max_examples=100, steps=50, replay=True)
    settings.register_profile(PREFIX + "replay", replay)
    _REGISTERED.append(True)


def selected_profile_name() -> str:
    """The short name ARENACHECK_PROFILE selects (default ``dev``)."""
    name = os.environ.get(PROFILE_ENV, DEFAULT_PROFILE).removeprefix(PREFIX)
    if name not in PROFILES:
        known = ", ".join(PROFILES)
        raise ValueError(f"{PROFILE_ENV}={name!r}: known profiles are {known} (or arenacheck-NAME)")
    return name


_REGISTERED: list[bool] = []
_LOADED: list[str] = []


def arenacheck_settings() -> settings:
    """The selected arenacheck profile's settings, registered on first use and not loaded:
    the process's default settings stay whatever the project chose."""
    name = selected_profile_name()
    if not _REGISTERED:
        register_profiles()
    return settings.get_profile(PREFIX + name)


def ensure_profiles_loaded() -> str:
    """Register the profiles and make the selected one the process's default, once per
    process; for arenacheck's own test run and commands only. Returns its short name."""
    if not _LOADED:
        arenacheck_settings()
        name = selected_profile_name()
        settings.load_profile(PREFIX + name)
        _LOADED.append(name)
    return _LOADED[0]
