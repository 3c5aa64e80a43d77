"""The path of a test's child Python process: this checkout (for the tests and the
examples, imported as ``stateful_tests.tests.*`` and ``examples.*``) before what the
parent's path already holds, where ``arenacheck`` itself may live (``arenacheck
windows-python`` puts it there; an install puts it on the default path)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def child_pythonpath(parent: Mapping[str, str] | None = None) -> str:
    env = os.environ if parent is None else parent
    return os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
