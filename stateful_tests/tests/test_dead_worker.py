"""A worker that dies is reported with its test, the last step it started and a replay.

A crash the harness cannot isolate kills the pytest-xdist worker; xdist then says only which
test was running. The flight recorder (``arenacheck.record.flight``) keeps the current
example's program on disk before each step, and the plugin turns it into a regression file
pair and report lines. A session that runs no machine keeps xdist's report as it is.

The crashing arena calls ``os.abort()``: a real death by signal on POSIX and an abnormal exit
on Windows, both of which xdist reports as a crashed worker (so does ``os._exit``).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from arenacheck.harness import pytest_plugin
from arenacheck.record import flight
from arenacheck.record.replay import load_program
from arenacheck.record.trace import traced

from stateful_tests.tests.children import child_pythonpath

TIMEOUT = 300.0
CRASHY_ARENA = '''\
    """An arena that kills its own process at its second successful allocation."""
    import os

    from arenacheck.impl.arena import Arena


    class AbortsOnSecondAlloc(Arena):
        allocations = 0

        def try_alloc(self, size, align=1):
            addr = super().try_alloc(size, align)
            if addr is not None:
                self.allocations += 1
                if self.allocations == 2:
                    os.abort()
            return addr
    '''
CRASHING_MACHINE = """\
    from arenacheck.harness.runner import run_machine
    from arenacheck.machines.arena import machine_for


    def test_fine():
        pass


    def test_machine(arenacheck_backend):
        impl = "crashy_arena:AbortsOnSecondAlloc"
        machine = machine_for(arenacheck_backend, "small", impl=impl)
        run_machine(machine, backend_name=arenacheck_backend)
    """
PLAIN_ABORT = """\
    import os


    def test_fine():
        pass


    def test_abort():
        os.abort()
    """
# A traced step outside run_machine leaves its flight file behind; a later test's crash on
# the same worker is still not arenacheck's to explain.
STEP_THEN_ABORT = """\
    import os

    from arenacheck.machines.arena import machine_for


    def test_steps(arenacheck_backend):
        machine = machine_for(arenacheck_backend, "small")()
        machine.new_arena(min_align=1)
        machine.teardown()


    def test_abort_later():
        os.abort()
    """
CRASH_LINE = re.compile(r"^worker '(gw\d+)' crashed while running '([^']+)'$", re.MULTILINE)


def child_pytest(
    project: Path, files: dict[str, str], *args: str
) -> tuple[subprocess.CompletedProcess[str], str]:
    """``python -m pytest -n ... args`` in ``project``, holding ``files`` and an empty
    ``pyproject.toml`` and ``conftest.py`` of its own (this repository's settings stay out);
    its temporary directory is ``project/tmp``. Returns the run and its output."""
    project.mkdir(parents=True, exist_ok=True)
    for name, text in {"pyproject.toml": "", "conftest.py": "", **files}.items():
        (project / name).write_text(textwrap.dedent(text), encoding="utf-8")
    tmp = project / "tmp"
    tmp.mkdir()
    # The parent's xdist and per-test variables describe the parent's run, not the child's.
    # The suite's own requirements (ARENACHECK_REQUIRE_BACKENDS and the rest) are not the
    # child run's: it selects its backend itself.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "ARENACHECK_"))}
    env.update(
        PYTHONPATH=child_pythonpath(),
        ARENACHECK_FAILURES_DIR=str(project / "failures"),
        TMPDIR=str(tmp),
        TEMP=str(tmp),
        TMP=str(tmp),
    )
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args],
        cwd=project,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        encoding="utf-8",
        errors="replace",
        timeout=TIMEOUT,
        check=False,
    )
    shown = f"$ {' '.join(done.args)}\nexit status {done.returncode}\n{done.stdout}{done.stderr}"
    return done, shown


def flight_dirs(project: Path) -> list[Path]:
    return sorted((project / "tmp").glob("arenacheck-flight-*"))


def test_a_dead_worker_is_reported_with_its_last_step_and_a_replay(tmp_path: Path) -> None:
    """The child's machine aborts its worker at the second allocation into one arena: the
    report names test, worker, the alloc it started and both replay commands, and the
    regression pair it names holds the example's steps, ending with that alloc."""
    files = {"crashy_arena.py": CRASHY_ARENA, "test_crash.py": CRASHING_MACHINE}
    backend = ("--arenacheck-backend", "win32-emulated")
    done, shown = child_pytest(tmp_path, files, "-n", "2", *backend)
    assert done.returncode == 1, shown
    nodeid = "test_crash.py::test_machine[win32-emulated]"
    crashes = CRASH_LINE.findall(done.stdout)
    assert [test for _, test in crashes] == [nodeid], shown
    worker = crashes[0][0]
    report = re.search(
        rf"^arenacheck: worker {worker} died in {re.escape(nodeid)}\n"
        r"  last step started: (state\.alloc\(.*\))\n"
        r"  steps in the example, that one included: (\d+)\n"
        # The path as the platform prints it: failures\x.json on Windows.
        r"  regression files: (failures[/\\]\S+\.json) and (failures[/\\]\S+\.py)\n"
        r"  replay: arenacheck replay (\S+)\n"
        r"      or: python -m pytest (\S+)$",
        done.stdout,
        re.MULTILINE,
    )
    assert report is not None, shown
    started, count, js, py, replay_js, replay_py = report.groups()
    assert (replay_js, replay_py) == (js, py), shown
    assert "1 failed, 1 passed" in done.stdout, shown

    program = load_program(tmp_path / js)
    assert load_program(tmp_path / py) == program
    assert "up to the step the worker died in" in (tmp_path / py).read_text(encoding="utf-8")
    steps = program["steps"]
    assert len(steps) == int(count), shown
    # An arena, an allocation into it, and the allocation that aborted: at least three.
    assert len(steps) >= 3, steps
    assert [s["rule"] for s in steps].count("alloc") >= 2, steps
    assert steps[0]["rule"] == "new_arena", steps
    assert steps[-1]["rule"] == "alloc" and steps[-1]["result"] is None, steps
    assert program["error"] == f"worker crashed: {worker} died in step {len(steps)}: {started}"
    assert program["machine"]["impl"] == "crashy_arena:AbortsOnSecondAlloc"
    assert program["found_on"] == "win32-emulated"
    assert flight_dirs(tmp_path) == [], shown


def test_a_session_without_arenacheck_keeps_xdists_report(tmp_path: Path) -> None:
    """A plain test that aborts its worker: xdist's one-line report, nothing of arenacheck's
    (no lines, no regression file, no flight directory left behind)."""
    done, shown = child_pytest(tmp_path, {"test_plain.py": PLAIN_ABORT}, "-n", "2")
    assert done.returncode == 1, shown
    assert "1 failed, 1 passed" in done.stdout, shown
    assert_plain_crash_report(done.stdout, "test_plain.py::test_abort", shown)
    assert not (tmp_path / "failures").exists(), shown
    assert flight_dirs(tmp_path) == [], shown


def test_a_crash_after_a_machine_on_the_same_worker_is_not_attributed_to_it(
    tmp_path: Path,
) -> None:
    """A machine's steps left a flight file on the only worker; the next test aborts it. The
    file names another test, so xdist's report stays as it is."""
    files = {"test_later.py": STEP_THEN_ABORT}
    done, shown = child_pytest(tmp_path, files, "-n", "1", "--arenacheck-backend", "win32-emulated")
    assert done.returncode == 1, shown
    assert "1 failed, 1 passed" in done.stdout, shown
    assert_plain_crash_report(done.stdout, "test_later.py::test_abort_later", shown)
    assert not (tmp_path / "failures").exists(), shown
    assert flight_dirs(tmp_path) == [], shown


def assert_plain_crash_report(stdout: str, nodeid: str, shown: str) -> None:
    """The crash's failure section is xdist's line alone, and no line is arenacheck's."""
    crashes = CRASH_LINE.findall(stdout)
    assert [test for _, test in crashes] == [nodeid], shown
    after = stdout.split(f"crashed while running '{nodeid}'\n", 1)[1]
    assert after.startswith("=========================== short test summary info"), shown
    assert not re.search(r"^\s*(arenacheck:|replay:)", stdout, re.MULTILINE), shown


# ------------------------------------------------------------------- the file itself


class Named:
    def __init__(self, name: str) -> None:
        self.trace_name = name


class Steps:
    """Two traced rules, the second reading the flight file while it runs."""

    backend_name = "nowhere"

    def __init__(self, file: Path) -> None:
        self.file = file
        self.seen: dict[str, Any] = {}

    @traced
    def make(self, n: int) -> Named:
        return Named(f"thing{n}")

    @traced
    def use(self, thing: Named) -> None:
        self.seen = json.loads(self.file.read_text(encoding="utf-8"))


def test_the_file_holds_the_steps_so_far_with_the_started_one_last(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While a step runs, the file holds every earlier step with its result name, then the
    started one with none; a machine no regression file can rebuild is recorded without."""
    file = tmp_path / "flight" / "gw9.json"
    monkeypatch.setattr(pytest_plugin, "_FLIGHT_FILE", [file])
    monkeypatch.setenv("PYTEST_CURRENT_TEST", "t.py::test_x[a (b)] (call)")
    assert flight.target() == file
    steps = Steps(file)
    flight.begin(steps, tmp_path / "failures")
    begun = json.loads(file.read_text(encoding="utf-8"))
    assert begun["steps"] == [] and begun["test"] == "t.py::test_x[a (b)]"
    assert begun["failures_dir"] == str((tmp_path / "failures").absolute())
    steps.make(n=1)
    thing = steps.make(n=2)
    steps.use(thing=thing)
    assert steps.seen["machine"] is None
    assert steps.seen["found_on"] == "nowhere"
    assert steps.seen["steps"] == [
        {"rule": "make", "args": {"n": 1}, "result": "thing1"},
        {"rule": "make", "args": {"n": 2}, "result": "thing2"},
        {"rule": "use", "args": {"thing": {"ref": "thing2"}}, "result": None},
    ]
    # A new example rewrites the file from its start, shorter than the last one.
    flight.begin(steps)
    assert flight.read(file)["steps"] == []
    flight.forget()
    assert not file.exists()
    assert [p.name for p in file.parent.iterdir()] == []


def test_the_recorder_is_off_outside_an_xdist_worker(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With no flight file named (plain pytest, or no pytest at all), a traced step writes
    nothing."""
    monkeypatch.setattr(pytest_plugin, "_FLIGHT_FILE", [])
    assert flight.target() is None
    monkeypatch.chdir(tmp_path)
    steps = Steps(tmp_path / "unused.json")
    steps.make(n=2)
    assert "_flight_log" not in steps.__dict__
    assert list(tmp_path.iterdir()) == []
