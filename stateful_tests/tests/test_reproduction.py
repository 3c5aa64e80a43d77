"""Reproducing minimised failures: regression files, replay, the example database, Redis.

Every scenario runs the harness in separate processes, as a user would: a failure found in
one process must come back in another that shares only a file, a directory or a URL.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from arenacheck.backends.registry import POSIX_NATIVE, WIN32_EMULATED, WIN32_NATIVE
from arenacheck.faults.broken_arenas import UnalignedGrowCommit
from arenacheck.harness.runner import run_machine
from arenacheck.impl.arena import Arena
from arenacheck.machines.arena import machine_for
from arenacheck.record.regression import write_regression
from arenacheck.record.replay import load_program
from hypothesis import settings

from stateful_tests.tests.children import child_pythonpath

ROOT = Path(__file__).resolve().parents[2]
# Failures are found on this platform's own OS, as a user finds them.
NATIVE = WIN32_NATIVE if sys.platform == "win32" else POSIX_NATIVE
BROKEN = "arenacheck.faults.broken_arenas:UnalignedGrowCommit"
SLOW_BROKEN = "stateful_tests.tests.test_reproduction:SlowUnalignedGrowCommit"
DIVERGENCE = "OS calls"  # what UnalignedGrowCommit's first failure says


class SlowUnalignedGrowCommit(UnalignedGrowCommit):
    """The same bug, slowed down so that shrinking lasts long enough to be interrupted."""

    def try_alloc(self, size: object, align: object = 1) -> int | None:
        time.sleep(0.002)
        return super().try_alloc(size, align)


CHILD = """
import sys
from pathlib import Path
from hypothesis import settings
from arenacheck.harness.profiles import ensure_profiles_loaded
from arenacheck.machines.arena import machine_for
from arenacheck.harness.runner import run_machine

ensure_profiles_loaded()
machine = machine_for(sys.argv[3], "oxc", impl=sys.argv[1])
run_machine(
    machine,
    backend_name=sys.argv[3],
    run_settings=settings(settings.default, max_examples=2000),
    write_failures_to=Path(sys.argv[2]),
)
print("NO FAILURE")
"""


def child(impl: str, failures: Path) -> list[str]:
    """The command running CHILD: ``impl`` on this platform's backend, failures to a dir."""
    return [sys.executable, "-c", CHILD, impl, str(failures), NATIVE]


def child_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ARENACHECK_")}
    env.update(extra)
    env["PYTHONPATH"] = child_pythonpath()
    return env


def run(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args, cwd=cwd, env=env, capture_output=True, text=True, timeout=600, check=False
    )


# --------------------------------------------------------------- regression files


@pytest.fixture(scope="module")
def regression(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A regression pair from a seeded fault, written outside the repository."""
    out = tmp_path_factory.mktemp("failures")
    machine = machine_for(NATIVE, "oxc", impl=BROKEN)
    budget = settings(settings.default, max_examples=2000, database=None)
    with pytest.raises(AssertionError):
        run_machine(machine, backend_name=NATIVE, run_settings=budget, write_failures_to=out)
    (py,) = out.glob("ArenaMachine-*.py")
    (js,) = out.glob("ArenaMachine-*.json")
    return py, js


def pytest_on(file: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    args = [sys.executable, "-m", "pytest", "-q", "-n", "0", "-p", "no:cacheprovider"]
    return run([*args, str(file), *extra], child_env(), file.parent)


def test_regression_file_fails_on_its_own_in_a_fresh_process(regression: tuple[Path, Path]) -> None:
    py, _ = regression
    for backend in (NATIVE, WIN32_EMULATED):
        result = pytest_on(py, "--arenacheck-backend", backend)
        assert result.returncode == 1, result.stdout + result.stderr
        assert DIVERGENCE in result.stdout
        assert "1 failed" in result.stdout


def test_regression_file_passes_against_the_correct_arena(regression: tuple[Path, Path]) -> None:
    py, _ = regression
    impl = f"{Arena.__module__}:{Arena.__name__}"
    result = pytest_on(py, "--arenacheck-backend", NATIVE, "--arenacheck-impl", impl)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed" in result.stdout


def test_regression_file_holds_the_program_as_data(regression: tuple[Path, Path]) -> None:
    py, js = regression
    text = py.read_text(encoding="utf-8")
    assert "import hypothesis" not in text and "from hypothesis" not in text
    assert BROKEN in text and BROKEN in js.read_text(encoding="utf-8")
    assert py.stem == js.stem


def test_regression_files_keep_a_message_beyond_ascii(tmp_path: Path) -> None:
    """Whatever the locale's encoding: an arena may raise any text, and it comes back."""
    machine = machine_for(WIN32_EMULATED, "small", impl=BROKEN)
    error = AssertionError("caf\u00e9 \u2192 \u2717 at 0x10")
    py, js = write_regression(machine, WIN32_EMULATED, [], error, tmp_path)
    assert load_program(py)["error"] == load_program(js)["error"] == f"AssertionError: {error}"


def test_trace_replays_with_the_divergence_picture(regression: tuple[Path, Path]) -> None:
    _, js = regression
    cli = [sys.executable, "-m", "arenacheck.cli.main", "replay", str(js)]
    result = run(cli, child_env(), ROOT)
    assert result.returncode == 1, result.stdout + result.stderr
    out = result.stdout
    assert "step 1: arena0 = state.new_arena(" in out
    assert "model: ok at" in out and "impl:" in out
    assert "DIVERGENCE at step" in out
    assert "model  |" in out and "OS     |" in out
    for name in ("R=", "C=", "S=", "P=", "F="):
        assert name in out
    fixed = run([*cli, "--arena-impl", "arenacheck.impl.arena:Arena"], child_env(), ROOT)
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    assert "no divergence" in fixed.stdout


# ------------------------------------------------------------ example database

# A killed child's status: minus the signal on POSIX; on Windows, the status handed to
# TerminateProcess, one no run ends with by itself (a failing run exits with 1).
if sys.platform == "win32":
    KILLED = 0xDEAD
    PROCESS_TERMINATE = 0x0001
else:
    KILLED = -signal.SIGKILL


def kill_outright(process: subprocess.Popen[bytes]) -> None:
    """End ``process`` at once, before it can run another line: SIGKILL, or TerminateProcess."""
    if sys.platform == "win32":
        import _winapi

        handle = _winapi.OpenProcess(PROCESS_TERMINATE, False, process.pid)
        try:
            _winapi.TerminateProcess(handle, KILLED)
        finally:
            _winapi.CloseHandle(handle)
    else:
        process.send_signal(signal.SIGKILL)
    process.wait()


def test_killed_while_shrinking_then_replayed_from_the_database(tmp_path: Path) -> None:
    db = tmp_path / "db"
    env = child_env(ARENACHECK_DATABASE_DIR=str(db), ARENACHECK_PROFILE="dev")
    running = subprocess.Popen(
        child(SLOW_BROKEN, tmp_path / "first"),
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 300
        # Hypothesis saves a failing example the moment it finds it, then shrinks.
        while not (db.exists() and any(p.is_file() for p in db.rglob("*"))):
            assert running.poll() is None, "the run ended before it found the failure"
            assert time.monotonic() < deadline, "no failure found"
            time.sleep(0.02)
        assert running.poll() is None, "the run finished before it could be killed"
        kill_outright(running)
    finally:
        running.kill()
        running.wait()
    assert running.returncode == KILLED
    assert not (tmp_path / "first").exists(), "the killed run got as far as reporting"
    replay_env = {**env, "ARENACHECK_PROFILE": "replay"}
    again = run(child(SLOW_BROKEN, tmp_path / "second"), replay_env, tmp_path)
    assert again.returncode == 1, again.stdout + again.stderr
    assert DIVERGENCE in again.stderr
    assert list((tmp_path / "second").glob("ArenaMachine-*.py"))


def test_replay_profile_generates_nothing(tmp_path: Path) -> None:
    """With an empty database the replay profile has nothing to run: Hypothesis says so."""
    env = child_env(ARENACHECK_DATABASE_DIR=str(tmp_path / "empty"), ARENACHECK_PROFILE="replay")
    result = run(child(BROKEN, tmp_path / "out"), env, tmp_path)
    assert "told to run no test cases" in result.stderr, result.stdout + result.stderr
    assert not (tmp_path / "out").exists()


# ----------------------------------------------------------------------- Redis


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture
def redis_url(tmp_path: Path) -> Iterator[str]:
    server = shutil.which("redis-server")
    if server is None:
        reason = (
            "needs a redis-server executable on PATH; Redis publishes no Windows build"
            if sys.platform == "win32"
            else "needs Debian's redis-server (apt-get install redis-server)"
        )
        if os.environ.get("ARENACHECK_REQUIRE_REDIS") == "1":
            pytest.fail(f"required: {reason}", pytrace=False)
        pytest.skip(reason)
    port = free_port()
    args = [
        server,
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--dir",
        str(tmp_path),
    ]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        import redis

        client = redis.Redis(host="127.0.0.1", port=port)
        for _ in range(200):
            try:
                client.ping()
                break
            except redis.ConnectionError:
                time.sleep(0.05)
        else:
            pytest.fail("redis-server did not start")
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_failure_shared_through_redis(tmp_path: Path, redis_url: str) -> None:
    first_env = child_env(
        ARENACHECK_DATABASE=redis_url,
        ARENACHECK_DATABASE_DIR=str(tmp_path / "local-a"),
        ARENACHECK_PROFILE="dev",
    )
    first = run(child(BROKEN, tmp_path / "a"), first_env, tmp_path)
    assert first.returncode == 1, first.stdout + first.stderr
    (found,) = (tmp_path / "a").glob("ArenaMachine-*.py")
    second_env = {
        **first_env,
        "ARENACHECK_DATABASE_DIR": str(tmp_path / "local-b"),
        "ARENACHECK_PROFILE": "replay",
    }
    second = run(child(BROKEN, tmp_path / "b"), second_env, tmp_path)
    assert second.returncode == 1, second.stdout + second.stderr
    (replayed,) = (tmp_path / "b").glob("ArenaMachine-*.py")
    assert replayed.name == found.name, "the second process got another program back"
