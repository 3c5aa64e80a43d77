"""Replaying a recorded program step by step, without Hypothesis.

Each step calls the machine's rule with the recorded arguments (handles resolved to the
objects earlier steps returned), then checks every invariant, exactly as Hypothesis would.
With an output stream, each step is printed with what the model predicted and what the
implementation and the OS did; at the first divergence, a picture of every reservation
shows the model's expectation above the OS's own view.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import runpy
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TextIO

from arenacheck.backends.registry import WIN32_EMULATED, standin_installed, unavailable_reason
from arenacheck.record.regression import FORMAT
from arenacheck.record.trace import Step, from_data
from hypothesis.stateful import INVARIANT_MARKER, RuleBasedStateMachine


class IncompatibleBackend(ValueError):
    """The program's machine cannot run on the backend asked for (e.g. a POSIX VM program)."""


def load_program(path: str | Path) -> dict[str, Any]:
    """A program from a regression ``.py`` file (its ``PROGRAM``) or a ``.json`` trace."""
    p = Path(path)
    if p.suffix == ".json":
        program: dict[str, Any] = json.loads(p.read_text(encoding="utf-8"))
    elif p.suffix == ".py":
        program = runpy.run_path(str(p))["PROGRAM"]
    else:
        raise ValueError(f"{p}: expected a regression .py file or a .json trace")
    if program.get("format") != FORMAT:
        raise ValueError(f"{p}: trace format {program.get('format')!r}, expected {FORMAT}")
    return program


def invariants_of(machine: RuleBasedStateMachine) -> list[Callable[[], None]]:
    return [
        getattr(machine, name)
        for name, member in inspect.getmembers(type(machine))
        if getattr(member, INVARIANT_MARKER, None) is not None
    ]


@contextlib.contextmanager
def _backend_ready(backend_name: str) -> Iterator[None]:
    reason = unavailable_reason(backend_name)
    if reason is not None:
        raise IncompatibleBackend(reason)
    if backend_name == WIN32_EMULATED:
        with standin_installed():
            yield
    else:
        yield


def _call_text(step: Step) -> str:
    args = ", ".join(f"{k}={_show(v)}" for k, v in step.args.items())
    target = f"{step.result} = " if step.result else ""
    return f"{target}state.{step.rule}({args})"


def _show(value: Any) -> str:
    if isinstance(value, dict) and "ref" in value:
        return str(value["ref"])
    if isinstance(value, dict) and "shape" in value:
        fields = ", ".join(_show(v) for v in value["fields"].values())
        return f"{value['shape']}({fields})"
    return repr(value)


def replay_program(
    program: dict[str, Any],
    backend_name: str,
    impl: str | None = None,
    out: TextIO | None = None,
) -> None:
    """Run the program on ``backend_name``; raises what the machine raised at the divergence."""
    from arenacheck.machines.registry import build

    try:
        machine_cls = build(program["machine"], backend_name, impl)
    except ValueError as e:
        raise IncompatibleBackend(str(e)) from e

    def say(line: str) -> None:
        if out is not None:
            print(line, file=out)

    with _backend_ready(backend_name):
        machine = machine_cls()
        if hasattr(machine, "narrate"):
            machine.narrate = True
        refs: dict[str, object] = {}
        step_no = 0
        try:
            for check in invariants_of(machine):
                check()
            for step_no, raw in enumerate(program["steps"], start=1):
                step = Step.from_json(raw)
                say(f"step {step_no}: {_call_text(step)}")
                args = {k: from_data(v, refs) for k, v in step.args.items()}
                result = getattr(machine, step.rule)(**args)
                if step.result is not None:
                    refs[step.result] = result
                for line in getattr(machine, "notes", []):
                    say(f"    {line}")
                getattr(machine, "notes", []).clear()
                for check in invariants_of(machine):
                    check()
        except BaseException as error:
            for line in getattr(machine, "notes", []):
                say(f"    {line}")
            say(f"DIVERGENCE at step {step_no}: {type(error).__name__}: {error}")
            for picture in getattr(machine, "pictures", list)():
                say(picture)
            if out is not None and hasattr(machine, "pictures"):
                from arenacheck.record.picture import LEGEND

                say(LEGEND)
            with contextlib.suppress(BaseException):
                machine.teardown()
            raise
        machine.teardown()
        say(f"replayed {len(program['steps'])} steps on {backend_name}: no divergence")


def replay_or_skip(program: dict[str, Any], backend_name: str, impl: str | None = None) -> None:
    """The body of a regression test: a backend the machine cannot use is skipped, with why."""
    import pytest

    try:
        replay_program(program, backend_name, impl=impl)
    except IncompatibleBackend as e:
        pytest.skip(str(e))
