"""arenacheck's pytest plugin: backend selection, requirements, the implementation under test.

Installed as a ``pytest11`` entry point, so regression files written to ``failures/`` run
anywhere arenacheck is installed, not only inside this repository. Every pytest session in
that environment loads it, so it stays invisible until arenacheck is used: its options,
fixtures and environment variables carry arenacheck's name, importing it imports nothing
that touches the OS, registers no Hypothesis profile and loads none, and it reports and
validates only when an arenacheck option or requirement is given (or a project asks for it
with ``arenacheck_header``). Tests ask for ``arenacheck_backend`` to run once per backend.

Under pytest-xdist it names to each worker a flight-recorder file (``arenacheck.record.flight``),
which only a running machine creates; when a worker dies in a test whose machine left one,
the crash report says which step it had started and how to replay it. A session that runs no
machine has no such file, and xdist's report stays as it is.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import pytest
from arenacheck.backends.names import BACKEND_NAMES, WIN32_EMULATED

if TYPE_CHECKING:
    from unittest.mock import MagicMock

    from pytest_mock import MockerFixture

REQUIRE_ENV = "ARENACHECK_REQUIRE_BACKENDS"
IMPL_ENV = "ARENACHECK_IMPL"
BACKEND_OPTION = "--arenacheck-backend"
IMPL_OPTION = "--arenacheck-impl"
HEADER_INI = "arenacheck_header"
# The key of ``workerinput`` naming the directory of this pytest run's flight-recorder files.
FLIGHT_INPUT = "arenacheck_flight_dir"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("arenacheck")
    group.addoption(
        IMPL_OPTION,
        dest="arenacheck_impl",
        default=None,
        metavar="MODULE:FACTORY",
        help=f"the arena implementation under test (default: the built-in one; env {IMPL_ENV})",
    )
    group.addoption(
        BACKEND_OPTION,
        dest="arenacheck_backend",
        action="append",
        default=[],
        metavar="NAME",
        help=f"run only these backends (repeat or comma-separate): {', '.join(BACKEND_NAMES)}",
    )
    parser.addini(HEADER_INI, "report arenacheck's backends in the header", type="bool")


def _names(values: list[str]) -> list[str]:
    return [n.strip() for v in values for n in v.split(",") if n.strip()]


def chosen_impl(config: pytest.Config) -> str | None:
    """The implementation named by the option, else ``ARENACHECK_IMPL``, else None."""
    value: str | None = config.getoption("arenacheck_impl")
    return value or os.environ.get(IMPL_ENV) or None


def selected_backends(config: pytest.Config) -> list[str]:
    chosen = _names(config.getoption("arenacheck_backend"))
    return chosen or list(BACKEND_NAMES)


def required_backends() -> list[str]:
    return _names([os.environ.get(REQUIRE_ENV, "")])


def in_use(config: pytest.Config) -> bool:
    """Whether this pytest run asked anything of arenacheck before collection."""
    return bool(
        config.getoption("arenacheck_backend")
        or chosen_impl(config)
        or required_backends()
        or config.getini(HEADER_INI)
    )


_SESSION_ROOT: list[Path] = []


def session_root() -> Path | None:
    """The rootdir of the pytest run under way: the project whose ``.hypothesis/`` holds
    arenacheck's example database (``profiles.project_root`` asks)."""
    return _SESSION_ROOT[0] if _SESSION_ROOT else None


_FLIGHT_FILE: list[Path] = []


class WorkerController(Protocol):
    """What the hooks read of xdist's ``WorkerController`` (xdist ships no types)."""

    config: pytest.Config
    workerinput: dict[str, Any]


_FLIGHT_DIR = pytest.StashKey[Path]()


def flight_file() -> Path | None:
    """This xdist worker's flight-recorder file (``arenacheck.record.flight`` asks); None
    outside a worker, where no one would be left to read it."""
    return _FLIGHT_FILE[0] if _FLIGHT_FILE else None


def pytest_configure(config: pytest.Config) -> None:
    # Kept, not acted on: a test may use arenacheck with no option given, and its examples
    # still belong to the project pytest runs in, wherever the working directory is.
    _SESSION_ROOT[:] = [config.rootpath]
    # A name only: the file and its directory exist once a machine runs here.
    workerinput: dict[str, Any] | None = getattr(config, "workerinput", None)
    if workerinput and FLIGHT_INPUT in workerinput:
        directory = Path(workerinput[FLIGHT_INPUT])
        _FLIGHT_FILE[:] = [directory / f"{workerinput['workerid']}.json"]
    if not in_use(config):
        return
    from arenacheck.harness.plugins import PluginError, load_factory

    unknown = [n for n in selected_backends(config) + required_backends() if n not in BACKEND_NAMES]
    if unknown:
        raise pytest.UsageError(
            f"unknown backend(s) {', '.join(unknown)}; known: {', '.join(BACKEND_NAMES)}"
        )
    impl = chosen_impl(config)
    if impl:
        try:
            load_factory(impl)
        except PluginError as e:
            raise pytest.UsageError(str(e)) from e
    unselected = [n for n in required_backends() if n not in selected_backends(config)]
    if unselected:
        raise pytest.UsageError(
            f"{REQUIRE_ENV} requires {', '.join(unselected)}, which {BACKEND_OPTION} left out"
        )


def pytest_unconfigure(config: pytest.Config) -> None:
    _SESSION_ROOT.clear()
    _FLIGHT_FILE.clear()
    directory = config.stash.get(_FLIGHT_DIR, None)
    if directory is not None:
        import shutil

        shutil.rmtree(directory, ignore_errors=True)


# Optional: the hooks are xdist's, and a session may run without it (``-p no:xdist``).
@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: WorkerController) -> None:
    """Each worker's flight-recorder directory: one per session, named but not made here."""
    config = node.config
    if _FLIGHT_DIR not in config.stash:
        import tempfile

        name = f"arenacheck-flight-{os.getpid()}-{os.urandom(6).hex()}"
        config.stash[_FLIGHT_DIR] = Path(tempfile.gettempdir()) / name
    node.workerinput[FLIGHT_INPUT] = str(config.stash[_FLIGHT_DIR])


@pytest.hookimpl(optionalhook=True)
def pytest_handlecrashitem(crashitem: str, report: pytest.TestReport, sched: object) -> None:
    """A dead worker whose flight file names this test: its last step started, the
    regression files written from it and the commands that replay them, in the report."""
    node: WorkerController | None = getattr(report, "node", None)
    directory = None if node is None else node.workerinput.get(FLIGHT_INPUT)
    if node is None or directory is None:
        return
    worker = str(node.workerinput["workerid"])
    path = Path(directory) / f"{worker}.json"
    if not path.is_file():
        return
    from arenacheck.record.flight import crash_report

    lines = crash_report(path, crashitem, worker)
    if lines:
        report.longrepr = "\n".join([str(report.longrepr), *lines])


def pytest_report_header(config: pytest.Config) -> list[str]:
    if not in_use(config):
        return []
    from arenacheck.backends.registry import unavailable_reason

    lines = []
    for name in selected_backends(config):
        reason = unavailable_reason(name)
        required = " (required)" if name in required_backends() else ""
        lines.append(f"arenacheck backend {name}{required}: {reason or 'available'}")
    return lines


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "arenacheck_backend" in metafunc.fixturenames:
        names = selected_backends(metafunc.config)
        metafunc.parametrize("arenacheck_backend", names, ids=names, indirect=True)


def skip_unless_available(name: str) -> None:
    """A backend this machine lacks: skip the test with the reason, or fail it when the
    backend is required (``ARENACHECK_REQUIRE_BACKENDS``)."""
    from arenacheck.backends.registry import unavailable_reason

    reason = unavailable_reason(name)
    if reason is not None:
        if name in required_backends():
            pytest.fail(f"required backend unavailable: {reason}", pytrace=False)
        pytest.skip(reason)


@pytest.fixture
def arenacheck_backend(request: pytest.FixtureRequest) -> str:
    """The backend under test; missing ones skip with the reason, or fail when required."""
    name: str = request.param
    skip_unless_available(name)
    if name == WIN32_EMULATED:
        request.getfixturevalue("arenacheck_emulated_kernel32")
    return name


@pytest.fixture
def arenacheck_emulated_kernel32(mocker: MockerFixture) -> MagicMock:
    """Point the Windows backend's kernel32 seam at a fresh model-backed stand-in per load."""
    from arenacheck.backends.registry import SEAM
    from arenacheck.backends.standin import EmulatedKernel32

    patched: MagicMock = mocker.patch(SEAM, side_effect=EmulatedKernel32)
    return patched


@pytest.fixture
def arenacheck_impl(request: pytest.FixtureRequest) -> str | None:
    """The implementation named by --arenacheck-impl or ARENACHECK_IMPL (None: built-in)."""
    return chosen_impl(request.config)
