"""arenacheck's pytest plugin: backend selection, requirements, the implementation under test.

Installed as a ``pytest11`` entry point, so regression files written to ``failures/`` run
anywhere arenacheck is installed, not only inside this repository. Importing it registers
and loads the Hypothesis profiles before any machine exists.
"""

from __future__ import annotations

import os
from unittest.mock import MagicMock

import pytest
from pytest_mock import MockerFixture

from stateful_tests.backends import (
    BACKEND_NAMES,
    SEAM,
    WIN32_EMULATED,
    unavailable_reason,
)
from stateful_tests.kernel32_standin import EmulatedKernel32
from stateful_tests.plugins import DEFAULT_IMPL, PluginError, load_factory
from stateful_tests.profiles import ensure_profiles_loaded

ensure_profiles_loaded()

REQUIRE_ENV = "ARENACHECK_REQUIRE_BACKENDS"
IMPL_ENV = "ARENACHECK_IMPL"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--arena-impl",
        default=os.environ.get(IMPL_ENV) or None,
        metavar="MODULE:FACTORY",
        help=f"the arena implementation under test (default {DEFAULT_IMPL}; env {IMPL_ENV})",
    )
    parser.addoption(
        "--backend",
        action="append",
        default=[],
        metavar="NAME",
        help=f"run only these backends (repeat or comma-separate): {', '.join(BACKEND_NAMES)}",
    )


def _names(values: list[str]) -> list[str]:
    return [n.strip() for v in values for n in v.split(",") if n.strip()]


def selected_backends(config: pytest.Config) -> list[str]:
    chosen = _names(config.getoption("--backend"))
    return chosen or list(BACKEND_NAMES)


def required_backends() -> list[str]:
    return _names([os.environ.get(REQUIRE_ENV, "")])


def pytest_configure(config: pytest.Config) -> None:
    unknown = [n for n in selected_backends(config) + required_backends() if n not in BACKEND_NAMES]
    if unknown:
        raise pytest.UsageError(
            f"unknown backend(s) {', '.join(unknown)}; known: {', '.join(BACKEND_NAMES)}"
        )
    impl = config.getoption("--arena-impl")
    if impl:
        try:
            load_factory(impl)
        except PluginError as e:
            raise pytest.UsageError(str(e)) from e
    unselected = [n for n in required_backends() if n not in selected_backends(config)]
    if unselected:
        raise pytest.UsageError(
            f"{REQUIRE_ENV} requires {', '.join(unselected)}, which --backend left out"
        )


def pytest_report_header(config: pytest.Config) -> list[str]:
    lines = []
    for name in selected_backends(config):
        reason = unavailable_reason(name)
        required = " (required)" if name in required_backends() else ""
        lines.append(f"arenacheck backend {name}{required}: {reason or 'available'}")
    return lines


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "backend_name" in metafunc.fixturenames:
        names = selected_backends(metafunc.config)
        metafunc.parametrize("backend_name", names, ids=names, indirect=True)


def skip_unless_available(name: str) -> None:
    """A backend this machine lacks: skip the test with the reason, or fail it when the
    backend is required (``ARENACHECK_REQUIRE_BACKENDS``)."""
    reason = unavailable_reason(name)
    if reason is not None:
        if name in required_backends():
            pytest.fail(f"required backend unavailable: {reason}", pytrace=False)
        pytest.skip(reason)


@pytest.fixture
def backend_name(request: pytest.FixtureRequest) -> str:
    """The backend under test; missing ones skip with the reason, or fail when required."""
    name: str = request.param
    skip_unless_available(name)
    if name == WIN32_EMULATED:
        request.getfixturevalue("emulated_kernel32")
    return name


@pytest.fixture
def emulated_kernel32(mocker: MockerFixture) -> MagicMock:
    """Point the Windows backend's kernel32 seam at a fresh model-backed stand-in per load."""
    patched: MagicMock = mocker.patch(SEAM, side_effect=EmulatedKernel32)
    return patched


@pytest.fixture
def arena_impl(request: pytest.FixtureRequest) -> str | None:
    """The implementation named by --arena-impl or ARENACHECK_IMPL (None: the built-in one)."""
    value: str | None = request.config.getoption("--arena-impl")
    return value
