"""The flight recorder: the step a machine started, on disk before it runs, for a dead worker.

A crash the harness cannot isolate (a segfault, an abort in the process itself) kills the
pytest-xdist worker, and with it every exception Hypothesis could shrink or report. So in an
xdist worker, before each traced step starts, the worker overwrites one small file of its own
with the test's nodeid, the machine's configuration and the current example's steps so far,
the started one last: a program in the regression ``.json`` format. When xdist reports the
worker crashed, the controller reads it (``pytest_plugin``) and turns it into a regression
file pair and report lines (:func:`crash_report`).

Each step rewrites the file's end in place, through a descriptor kept open, and the program is
read back as the file's first JSON value: a death after the write leaves this step's program whole,
one before it the previous step's (a death inside the write syscall, possible only when another
thread kills the process, can tear the file: it then does not parse, and xdist's report stays
plain). Nothing is fsynced: the file has to outlive the process, not the machine.

Outside xdist workers the recorder is off and costs a lookup per step: there a crash ends the
whole session, with no one left to read the file.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PLUGIN_MODULE = "arenacheck.harness.pytest_plugin"
# Kept on the machine instance: one per example, gone with it.
_LOG_ATTR = "_flight_log"


def target() -> Path | None:
    """This process's flight-recorder file: set only in an xdist worker of a session whose
    controller runs arenacheck's plugin."""
    # Looked up, not imported: outside pytest neither pytest nor the plugin gets loaded.
    plugin = sys.modules.get(PLUGIN_MODULE)
    path = getattr(plugin, "flight_file", lambda: None)()
    return path if isinstance(path, Path) else None


def current_test() -> str | None:
    """The nodeid of the test pytest is running in this process, from the variable it keeps."""
    value = os.environ.get("PYTEST_CURRENT_TEST")
    # "<nodeid> (<phase>)": the phase is always last, and a nodeid may itself hold " (".
    return value.rsplit(" (", 1)[0] if value else None


@dataclass
class _Log:
    """One example's recording. The file's first ``kept`` bytes are ``head`` and the first
    ``done`` steps, all returned, so their text is final: each step writes only what follows
    (the step before it, now with its result, and itself), not the whole program again."""

    path: Path
    head: bytes
    done: int = 0
    kept: int = 0
    # The text of step ``done`` as written when it started, ending ``"result": null}``.
    started: bytes = b""
    broken: bool = False


def _header(machine: object, failures: Path | None, regression: bool) -> bytes:
    from arenacheck.machines.registry import config_of
    from arenacheck.record.regression import FORMAT

    try:
        config: dict[str, Any] | None = config_of(type(machine))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        # Not a machine a regression file can rebuild: the crash is still reported.
        config = None
    head = {
        "format": FORMAT,
        "machine": config,
        "found_on": getattr(machine, "backend_name", None),
        "test": current_test(),
        "regression": regression,
        "failures_dir": None if failures is None else str(failures.absolute()),
    }
    return (json.dumps(head)[:-1] + ', "steps": [').encode("utf-8")


# The file stays open for the worker's life: opening, truncating or renaming over a file per
# step costs hundreds of microseconds on ext4, which flushes on both; writing in place costs 5.
# Beside its descriptor, the log that wrote it last: another one's bytes are not ours to keep.
_OPEN: list[tuple[Path, int, _Log]] = []
_LOCK = threading.Lock()


def _fd(path: Path, log: _Log) -> int:
    if _OPEN and _OPEN[0][0] == path:
        fd = _OPEN[0][1]
    else:
        _close()
        flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_BINARY", 0)
        try:
            fd = os.open(path, flags, 0o600)
        except FileNotFoundError:
            # The directory is made by the first write, so a session that never runs a
            # machine leaves nothing on disk.
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(path, flags, 0o600)
    if not _OPEN or _OPEN[0][2] is not log:
        log.done = log.kept = 0
    _OPEN[:] = [(path, fd, log)]
    return fd


def _close() -> None:
    if _OPEN:
        os.close(_OPEN.pop()[1])


def _write(fd: int, offset: int, data: bytes) -> None:
    """``data`` from ``offset`` on, the file ending with it. A death between the write and
    the truncation leaves the new program followed by the old one's tail, which
    :func:`read` ignores."""
    end = offset + len(data)
    os.lseek(fd, offset, os.SEEK_SET)
    while data:
        data = data[os.write(fd, data) :]
    os.ftruncate(fd, end)


def read(path: Path) -> dict[str, Any]:
    """The program a flight file holds: its first JSON value, whatever follows it."""
    value, _ = json.JSONDecoder().raw_decode(path.read_text(encoding="utf-8"))
    if not isinstance(value, dict):
        raise ValueError(f"{path}: not a flight record")
    return value


def begin(machine: object, failures: Path | None = None, regression: bool = True) -> None:
    """An example starts on ``machine``: its flight file says so, naming where a crash's
    regression files go (``failures``, else the controller's ``failures_dir()``), or that
    none are to be written."""
    path = target()
    if path is not None:
        machine.__dict__[_LOG_ATTR] = _Log(path, _header(machine, failures, regression))
        _save(machine.__dict__[_LOG_ATTR], [])


def record(machine: object, steps: list[Any]) -> None:
    """Before a step runs: the example's program so far, ``steps[-1]`` the one starting,
    written over this worker's flight file."""
    path = target()
    if path is None:
        return
    log: _Log | None = machine.__dict__.get(_LOG_ATTR)
    if log is None or log.path != path:
        # Driven by something other than run_machine, which would have begun the log.
        log = _Log(path, _header(machine, None, True))
        machine.__dict__[_LOG_ATTR] = log
    _save(log, steps)


def _save(log: _Log, steps: list[Any]) -> None:
    if log.broken:
        return
    with _LOCK:
        try:
            fd = _fd(log.path, log)
            start = log.kept
            kept = [] if log.kept else [log.head]
            # Every step but the last has returned, so its result name is final.
            for n in range(log.done, len(steps) - 1):
                kept.append(_finished(log, steps[n], n))
            data = b"".join(kept)
            log.done = max(log.done, len(steps) - 1)
            log.kept = start + len(data)
            log.started = _step_text(steps[-1], len(steps) - 1) if steps else b""
            _write(fd, start, data + log.started + b"]}")
        except OSError:
            # A recorder that cannot write must not fail the machine, nor leave an older step
            # to be reported as the last one started: no file, and xdist's plain report.
            log.broken = True
            with contextlib.suppress(OSError):
                _close()
            with contextlib.suppress(OSError):
                log.path.unlink()


def _step_text(step: Any, index: int) -> bytes:
    return (", " if index else "").encode() + json.dumps(step.as_json()).encode("utf-8")


_NULL_END = b"null}"


def _finished(log: _Log, step: Any, index: int) -> bytes:
    """Step ``index`` as it returned: its started text with the result put in, which spares
    encoding it twice (``result`` is the last key ``Step.as_json`` writes)."""
    if index == log.done and log.started.endswith(_NULL_END):
        return log.started[: -len(_NULL_END)] + json.dumps(step.result).encode("utf-8") + b"}"
    return _step_text(step, index)


def forget() -> None:
    """Remove this worker's flight file: the example it describes ended without a crash."""
    path = target()
    if path is not None:
        with _LOCK:
            # Closed first: Windows removes no file a process holds open.
            with contextlib.suppress(OSError):
                _close()
            with contextlib.suppress(OSError):
                path.unlink()


# ------------------------------------------------------------------------ the controller


def _shown(path: Path) -> str:
    """``path`` relative to the working directory when below it, as a user would type it."""
    try:
        return str(path.absolute().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def crash_report(path: Path, nodeid: str, worker: str) -> list[str]:
    """The lines that say what a dead worker was doing in test ``nodeid``, from its flight
    file at ``path``; the program is written out as a regression file pair and the flight
    file removed. No lines when the file is absent, unreadable or from another test."""
    from arenacheck.harness.runner import failures_dir
    from arenacheck.record.regression import WORKER_CRASHED, write_program
    from arenacheck.record.replay import _call_text
    from arenacheck.record.trace import Step

    try:
        program = read(path)
    except (OSError, ValueError):
        return []
    if program.get("test") != nodeid:
        # Left by an earlier test on this worker: the crash is not arenacheck's to explain.
        return []
    path.unlink()
    steps = [Step.from_json(raw) for raw in program["steps"]]
    last = _call_text(steps[-1]) if steps else "none, the example was starting"
    lines = [
        f"arenacheck: worker {worker} died in {nodeid}",
        f"  last step started: {last}",
        f"  steps in the example, that one included: {len(steps)}",
    ]
    if program.get("machine") is None:
        lines.append("  no regression file: the machine is not one arenacheck can rebuild")
        return lines
    if not program.get("regression", True):
        lines.append("  no regression file: the run asked for none")
        return lines
    error = f"{WORKER_CRASHED}: {worker} died in step {len(steps)}: {last}"
    recorded = {
        "format": program["format"],
        "machine": program["machine"],
        "found_on": program["found_on"],
        "error": error,
        "steps": program["steps"],
    }
    directory = Path(program["failures_dir"] or failures_dir())
    py, js = (_shown(p) for p in write_program(recorded, directory))
    lines += [
        f"  regression files: {js} and {py}",
        f"  replay: arenacheck replay {js}",
        f"      or: python -m pytest {py}",
    ]
    return lines
