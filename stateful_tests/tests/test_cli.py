"""The ``arenacheck`` command's own behaviour."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from arenacheck.cli.main import main


def test_backends_lists_every_backend(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["backends", "--require", "win32-emulated"]) == 0
    out = capsys.readouterr().out
    assert "win32-emulated   required  available" in out
    assert "posix-native" in out and "win32-native" in out


def test_backends_fails_when_a_required_one_is_missing() -> None:
    missing = "posix-native" if sys.platform == "win32" else "win32-native"
    assert main(["backends", "--require", missing]) == 1


def test_backends_rejects_unknown_names() -> None:
    assert main(["backends", "--require", "vax-vms"]) == 2


def test_a_reader_that_went_away_ends_it_quietly() -> None:
    """``arenacheck backends | head``: no traceback once the pipe's reader has gone."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        done = subprocess.run(
            [sys.executable, "-m", "arenacheck.cli.main", "backends"],
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
            check=False,
        )
    finally:
        os.close(write_end)
    assert done.returncode == 1
    assert "Traceback" not in done.stderr, done.stderr
