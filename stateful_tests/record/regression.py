"""Regression files: a failing machine's minimised program as a test that outlives Hypothesis.

``failures/<machine>-<hash>.py`` is a standalone pytest file holding the program as data and
replaying it step by step on every selected backend; ``failures/<machine>-<hash>.json`` is
the same program as a trace for ``arenacheck replay``. Both are deterministic, independent of
the Hypothesis version, and meant to be reviewed and committed.
"""

from __future__ import annotations

import hashlib
import json
import pprint
from pathlib import Path
from typing import Any

from arenacheck.record.trace import Step
from hypothesis.stateful import RuleBasedStateMachine

FORMAT = 1
# How a program recorded by a dead worker's flight recorder states its error.
WORKER_CRASHED = "worker crashed"


def program_of(
    machine: type[RuleBasedStateMachine], backend_name: str, steps: list[Step], error: BaseException
) -> dict[str, Any]:
    from arenacheck.machines.registry import config_of

    message = str(error).splitlines()[0] if str(error) else ""
    return {
        "format": FORMAT,
        "machine": config_of(machine),
        "found_on": backend_name,
        "error": f"{type(error).__name__}: {message}",
        "steps": [step.as_json() for step in steps],
    }


def short_hash(program: dict[str, Any]) -> str:
    key = json.dumps({"machine": program["machine"], "steps": program["steps"]}, sort_keys=True)
    return hashlib.sha256(key.encode()).hexdigest()[:10]


def render_test(program: dict[str, Any], stem: str) -> str:
    literal = pprint.pformat(program, indent=1, width=96, sort_dicts=False)
    # A dead worker's program is as far as it got: Hypothesis died with it, before shrinking.
    crashed = str(program["error"]).startswith(WORKER_CRASHED)
    which = (
        "program below, up to the step the worker died in,"
        if crashed
        else "minimised program below"
    )
    return f'''"""Regression: {program["machine"]["machine"]} failed on {program["found_on"]}.

    {program["error"]}

Replays the {which} step by step, without Hypothesis, on every backend
selected with --arenacheck-backend (all available ones by default). Run it with
``python -m pytest failures/{stem}.py`` or ``arenacheck replay failures/{stem}.json``.
"""

from arenacheck.record.replay import replay_or_skip

PROGRAM = {literal}


def test_regression(arenacheck_backend: str, arenacheck_impl: str | None) -> None:
    replay_or_skip(PROGRAM, arenacheck_backend, impl=arenacheck_impl)
'''


def write_regression(
    machine: type[RuleBasedStateMachine],
    backend_name: str,
    steps: list[Step],
    error: BaseException,
    directory: Path,
) -> tuple[Path, Path]:
    """Write the ``.py`` and ``.json`` pair; returns their paths."""
    return write_program(program_of(machine, backend_name, steps, error), directory)


def write_program(program: dict[str, Any], directory: Path) -> tuple[Path, Path]:
    """Write ``program`` (as :func:`program_of` builds it) as the ``.py`` and ``.json``
    pair named after its machine and hash; returns their paths."""
    stem = f"{program['machine']['machine']}-{short_hash(program)}"
    directory.mkdir(parents=True, exist_ok=True)
    py, js = directory / f"{stem}.py", directory / f"{stem}.json"
    # UTF-8 whatever the locale says: Python reads source as UTF-8 and JSON is UTF-8, while
    # Windows' locale encoding (cp1252 and the like) cannot hold every message an arena raises.
    py.write_text(render_test(program, stem), encoding="utf-8")
    js.write_text(json.dumps(program, indent=1) + "\n", encoding="utf-8")
    return py, js
