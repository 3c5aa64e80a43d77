"""The plugin contract: --arenacheck-impl / ARENACHECK_IMPL select the implementation under test."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from arenacheck.harness.plugins import PluginError, load_factory
from arenacheck.impl.arena import Arena

from stateful_tests.tests.children import child_pythonpath

ROOT = Path(__file__).resolve().parents[2]


def test_a_class_name_resolves_to_its_new() -> None:
    assert load_factory("arenacheck.impl.arena:Arena") == Arena.new


@pytest.mark.parametrize(
    "spec",
    [
        "arenacheck.impl.arena",
        "arenacheck.impl.arena:",
        "no.such.module:X",
        "arenacheck.impl.arena:NoSuchThing",
    ],
)
def test_bad_names_are_refused_clearly(spec: str) -> None:
    with pytest.raises(PluginError, match="arena implementation"):
        load_factory(spec)


def test_the_readme_example_plugin_runs_every_arena_machine() -> None:
    """The example of the README, run exactly as documented, on two backends."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ARENACHECK_")}
    env["PYTHONPATH"] = child_pythonpath()
    args = [
        sys.executable, "-m", "pytest", "-q", "-n", "0", "-p", "no:cacheprovider",
        "--arenacheck-impl", "examples.counting_arena:CountingArena",
        "--arenacheck-backend", "posix-native", "--arenacheck-backend", "win32-emulated",
        "stateful_tests/tests/test_arena_machine.py", "-k", "small",
    ]  # fmt: skip
    result = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"\b[1-9]\d* passed", result.stdout) and "failed" not in result.stdout


def test_a_broken_plugin_fails_the_arena_machine(tmp_path: Path) -> None:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("ARENACHECK_")},
        "PYTHONPATH": child_pythonpath(),
        "ARENACHECK_IMPL": "arenacheck.faults.zoo:MinAlignIgnored",
        "ARENACHECK_FAILURES_DIR": str(tmp_path),
    }
    # win32-emulated exists on every platform, so the broken plugin meets a real arena
    # machine wherever the suite runs.
    args = [
        sys.executable, "-m", "pytest", "-q", "-n", "0", "-p", "no:cacheprovider",
        "--arenacheck-backend", "win32-emulated",
        "stateful_tests/tests/test_arena_machine.py", "-k", "small",
    ]  # fmt: skip
    result = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "MinAlignIgnored" in result.stdout
    assert list(tmp_path.glob("ArenaMachine-*.py")), "no regression file for the failure"
