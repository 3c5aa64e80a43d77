"""Backend selection: a required backend that this machine lacks fails the run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from arenacheck.backends.registry import BACKEND_NAMES, unavailable_reason

ROOT = Path(__file__).resolve().parents[2]
TARGET = "stateful_tests/tests/test_oxc_numbers.py::test_initial_capacity_is_16320"


def run_pytest(*args: str, require: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ARENACHECK_REQUIRE_BACKENDS": require}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-n", "0", "-p", "no:cacheprovider", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_missing_required_backend_fails_instead_of_skipping() -> None:
    missing = next(n for n in BACKEND_NAMES if unavailable_reason(n) is not None)
    result = run_pytest(TARGET, "--arenacheck-backend", missing, require=missing)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "required backend unavailable" in result.stdout


def test_missing_optional_backend_is_skipped_with_its_reason() -> None:
    missing = next(n for n in BACKEND_NAMES if unavailable_reason(n) is not None)
    result = run_pytest(TARGET, "--arenacheck-backend", missing, "-rs", require="")
    assert result.returncode == 0, result.stdout + result.stderr
    assert str(unavailable_reason(missing)) in result.stdout


def test_unknown_backend_is_a_usage_error() -> None:
    result = run_pytest(TARGET, "--arenacheck-backend", "vax-vms", require="")
    assert result.returncode == 4
    assert "unknown backend" in result.stderr


def test_required_backend_left_out_by_selection_is_a_usage_error() -> None:
    result = run_pytest(TARGET, "--arenacheck-backend", "win32-emulated", require="posix-native")
    assert result.returncode == 4
    assert "which --arenacheck-backend left out" in result.stderr
