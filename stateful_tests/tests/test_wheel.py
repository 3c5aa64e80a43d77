"""The wheel, built from this checkout and installed into a fresh virtual environment.

Installing arenacheck must be invisible to a project that does not use it: one import name,
``arenacheck``, so a project's own ``model`` and ``impl`` packages stay its own; a pytest
plugin that every session loads but that adds no header line, registers and loads no
Hypothesis profile, and imports nothing beyond its option names; and, once a project does
use it, an example database in that project's ``.hypothesis/examples``. The C arena must
build from the installed package data, and ``arenacheck backends`` must run.

The environment gets its dependencies from a wheelhouse of the versions this environment
runs, fetched once by this environment's pip into arenacheck's cache and installed with
``--no-index`` from there, so that after the first run nothing is downloaded. Where the
build tools or the wheelhouse cannot be had, the tests skip with what is missing, unless
``ARENACHECK_REQUIRE_WHEEL=1`` (then they fail).
"""

from __future__ import annotations

import configparser
import email.parser
import hashlib
import importlib.metadata
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import textwrap
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import pytest
from arenacheck.backends.names import BACKEND_NAMES
from arenacheck.cli.windows_python import cache_root
from arenacheck.impl import c_arena
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name, parse_wheel_filename

REQUIRE_ENV = "ARENACHECK_REQUIRE_WHEEL"
# test_c_arena.py's rule: without a C compiler the C arena's tests skip, unless this is set.
REQUIRE_CC_ENV = "ARENACHECK_REQUIRE_CC"
ROOT = Path(__file__).resolve().parents[2]
# The checkout's folders and where the wheel puts them; the tests folder stays behind.
LAYOUT = {
    "stateful_tests": "arenacheck",
    "model": "arenacheck/model",
    "impl": "arenacheck/impl",
    "native": "arenacheck/native",
}
NATIVE_SOURCES = ("c_arena.c", "c_arena.h", "wine_vmserver.c")
HARD_DEPENDENCIES = {"hypothesis", "pytest", "pytest-xdist", "pytest-mock"}
# Building from a copy of the checkout keeps build/ and *.egg-info out of the checkout,
# whose build/ holds the editable install's link tree. These stay behind at its top level.
NOT_COPIED = (
    ".git",
    ".venv",
    "venv",
    "build",
    "dist",
    "failures",
    "*.egg-info",
    ".hypothesis",
    ".pytest_cache",
    ".mypy_cache",
    ".ruff_cache",
)
# What loading the plugin imports: the plugin, the backends' names (pure data) and their
# packages' __init__ modules, which hold only docstrings.
PLUGIN_IMPORTS = (
    "arenacheck",
    "arenacheck.backends",
    "arenacheck.backends.names",
    "arenacheck.harness",
    "arenacheck.harness.pytest_plugin",
)
TIMEOUT = 300.0
PIP = (sys.executable, "-m", "pip", "--disable-pip-version-check", "--timeout", "30")

# These tests share one build and one environment: one xdist worker runs them all.
pytestmark = pytest.mark.xdist_group("wheel")


def required(variable: str = REQUIRE_ENV) -> bool:
    return os.environ.get(variable, "").strip() not in ("", "0")


def unavailable(reason: str) -> NoReturn:
    """Skip with ``reason``, or fail when ARENACHECK_REQUIRE_WHEEL asks for the wheel."""
    if required():
        pytest.fail(f"{REQUIRE_ENV} is set, but {reason}", pytrace=False)
    pytest.skip(reason)


def run(
    argv: Sequence[str | Path],
    cwd: Path,
    env: Mapping[str, str] | None = None,
    timeout: float = TIMEOUT,
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in argv],
        cwd=cwd,
        env=None if env is None else dict(env),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        encoding="utf-8",
        errors="replace",
        timeout=timeout,
        check=False,
    )


def output(done: subprocess.CompletedProcess[str]) -> str:
    command = " ".join(map(str, done.args))
    return f"$ {command}\nexit status {done.returncode}\n{done.stdout}{done.stderr}"


# ------------------------------------------------------------------------------ the wheel


def build_wheel(into: Path) -> Path:
    """The wheel of a copy of this checkout, built without build isolation (offline)."""
    missing = [m for m in ("build", "pip", "venv") if importlib.util.find_spec(m) is None]
    if missing:
        unavailable(
            f"building the wheel needs {', '.join(missing)} in this environment "
            '(python -m pip install -e ".[test]")'
        )
    source = into / "source"
    top, anywhere = shutil.ignore_patterns(*NOT_COPIED), shutil.ignore_patterns("__pycache__")

    def ignore(folder: str, names: list[str]) -> set[str]:
        ignored = set(anywhere(folder, names))
        return ignored | set(top(folder, names)) if Path(folder) == ROOT else ignored

    shutil.copytree(ROOT, source, ignore=ignore, symlinks=True)
    dist = into / "dist"
    done = run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", dist, source],
        cwd=into,
    )
    if done.returncode != 0 and "Missing dependencies" in done.stdout + done.stderr:
        # What [build-system] requires is not installed here: build says which.
        unavailable(f'its build backend is missing (pip install -e ".[test]"):\n{output(done)}')
    assert done.returncode == 0, output(done)
    (wheel,) = dist.glob("*.whl")
    return wheel


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The wheel, and the copy of the checkout it was built from."""
    into = tmp_path_factory.mktemp("wheel")
    return build_wheel(into), into / "source"


@pytest.fixture(scope="module")
def wheel(built: tuple[Path, Path]) -> Path:
    return built[0]


def read_text(archive: zipfile.ZipFile, name: str) -> str:
    return archive.read(name).decode("utf-8")


def dist_info(archive: zipfile.ZipFile) -> str:
    (info,) = {
        n.split("/")[0] for n in archive.namelist() if n.split("/")[0].endswith(".dist-info")
    }
    return info


def test_wheel_holds_one_import_name(built: tuple[Path, Path]) -> None:
    """Only ``arenacheck/`` and its dist-info at the top; every module and C source of the
    checkout's folders inside it, the tests folder left out."""
    wheel, source = built
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        info = dist_info(archive)
        assert read_text(archive, f"{info}/top_level.txt").split() == ["arenacheck"]
    version = importlib.metadata.version("arenacheck")
    assert info == f"arenacheck-{version}.dist-info"
    assert {n.split("/")[0] for n in names} == {"arenacheck", info}
    assert not [n for n in names if n.startswith("arenacheck/tests/")]
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
    assert "arenacheck/py.typed" in names
    for name in NATIVE_SOURCES:
        assert f"arenacheck/native/{name}" in names
    # Every module of the four folders, and the data the wheel declares: a subpackage left
    # out of pyproject.toml's list is missing here.
    expected = {"arenacheck/py.typed"}
    expected |= {f"arenacheck/native/{p.name}" for p in (source / "native").glob("*.[ch]")}
    for folder, target in LAYOUT.items():
        for path in (source / folder).rglob("*.py"):
            relative = path.relative_to(source / folder)
            if folder == "stateful_tests" and relative.parts[0] == "tests":
                continue
            expected.add(f"{target}/{relative.as_posix()}")
    shipped = {n for n in names if not n.startswith(info)}
    assert shipped == expected, (
        f"in the checkout, not the wheel: {sorted(expected - shipped)}; "
        f"in the wheel, not the checkout: {sorted(shipped - expected)}"
    )


def test_wheel_metadata(wheel: Path) -> None:
    """The four hard dependencies, redis only under the redis extra, the two entry points."""
    with zipfile.ZipFile(wheel) as archive:
        info = dist_info(archive)
        metadata = email.parser.Parser().parsestr(read_text(archive, f"{info}/METADATA"))
        entry_points = configparser.ConfigParser(delimiters=("=",))
        entry_points.read_string(read_text(archive, f"{info}/entry_points.txt"))
    requirements = [Requirement(r) for r in metadata.get_all("Requires-Dist", [])]
    hard = {canonicalize_name(r.name) for r in requirements if r.marker is None}
    assert hard == HARD_DEPENDENCIES
    redis = [r for r in requirements if canonicalize_name(r.name) == "redis"]
    assert redis, "the redis extra requires nothing"
    assert [str(r.marker) for r in redis] == ['extra == "redis"'] * len(redis)
    assert "redis" in metadata.get_all("Provides-Extra", [])
    points = {s: dict(entry_points[s]) for s in entry_points.sections()}
    assert points == {
        "console_scripts": {"arenacheck": "arenacheck.cli.main:main"},
        "pytest11": {"arenacheck": "arenacheck.harness.pytest_plugin"},
    }


# -------------------------------------------------------------------- the wheelhouse


def installed_closure(requirements: Iterable[str]) -> dict[str, str]:
    """``requirements`` and all they need, as the versions this environment has installed:
    canonical name to version."""
    pins: dict[str, str] = {}
    todo = [(Requirement(r), "") for r in requirements]
    seen: set[tuple[str, str]] = set()
    while todo:
        requirement, extra = todo.pop()
        if requirement.marker is not None and not requirement.marker.evaluate({"extra": extra}):
            continue
        name = canonicalize_name(requirement.name)
        try:
            dist = importlib.metadata.distribution(requirement.name)
        except importlib.metadata.PackageNotFoundError:
            unavailable(f"{requirement} is not installed here, so no version of it to fetch")
        assert requirement.specifier.contains(dist.version, prereleases=True), (
            f"{requirement} is wanted, but this environment has {name} {dist.version}"
        )
        pins[name] = dist.version
        for wanted in ("", *requirement.extras):
            if (name, wanted) in seen:
                continue
            seen.add((name, wanted))
            todo.extend((Requirement(r), wanted) for r in dist.requires or [])
    return pins


def wheelhouse_dir(pins: Mapping[str, str]) -> Path:
    """One folder per interpreter, platform and set of versions, in arenacheck's cache."""
    lines = [f"{n}=={v}" for n, v in sorted(pins.items())]
    tag = f"{sys.implementation.cache_tag}-{sysconfig.get_platform()}"
    key = hashlib.sha256("\n".join([tag, *lines]).encode()).hexdigest()[:12]
    return cache_root() / "wheelhouse" / f"{tag}-{key}"


def wheel_versions(folder: Path) -> dict[str, str]:
    found: dict[str, str] = {}
    for path in folder.glob("*.whl"):
        name, version, _, _ = parse_wheel_filename(path.name)
        found[str(name)] = str(version)
    return found


def wheelhouse(pins: Mapping[str, str]) -> Path:
    """The wheels of ``pins``: from the cache, else fetched into it by this pip once.

    Fetched into a temporary sibling and renamed into place, so that an interrupted fetch
    leaves nothing half made and two runs at once each end with a whole folder."""
    final = wheelhouse_dir(pins)
    manifest = final / "manifest.json"
    if manifest.is_file() and wheel_versions(final) == dict(pins):
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".fetching-", dir=final.parent))
    try:
        lines = [f"{n}=={v}" for n, v in sorted(pins.items())]
        done = run(
            [*PIP, "download", "--no-deps", "--only-binary=:all:", "--dest", str(work), *lines],
            cwd=work,
        )
        if done.returncode != 0:
            unavailable(
                f"the wheelhouse {final} is not cached, and pip could not fetch "
                f"{' '.join(lines)} into it (fetched once; offline after):\n{output(done)}"
            )
        got = wheel_versions(work)
        assert got == dict(pins), f"pip fetched {got}, not {dict(pins)}"
        (work / "manifest.json").write_text(json.dumps(lines, indent=1) + "\n", "utf-8")
        try:
            work.rename(final)
        except OSError:
            if not manifest.is_file():
                raise
        return final
    finally:
        shutil.rmtree(work, ignore_errors=True)


# ------------------------------------------------------------------- the environment


@dataclass(frozen=True)
class Venv:
    """A fresh virtual environment with the wheel installed."""

    root: Path
    pins: dict[str, str]

    @property
    def scripts(self) -> Path:
        return self.root / ("Scripts" if os.name == "nt" else "bin")

    def script(self, name: str) -> Path:
        return self.scripts / (f"{name}.exe" if os.name == "nt" else name)

    @property
    def python(self) -> Path:
        return self.script("python")

    def env(self, **extra: str) -> dict[str, str]:
        """This process's environment with nothing of arenacheck's, pytest's, Hypothesis's or
        this environment's in it: as a user's shell in that environment would have it."""
        drop = ("ARENACHECK_", "PYTEST_", "HYPOTHESIS_", "PYTHON")
        env = {k: v for k, v in os.environ.items() if not k.upper().startswith(drop)}
        env.pop("VIRTUAL_ENV", None)
        env["VIRTUAL_ENV"] = str(self.root)
        env["PATH"] = os.pathsep.join([str(self.scripts), env.get("PATH", "")])
        env["PYTHONNOUSERSITE"] = "1"
        env["PYTHONIOENCODING"] = "utf-8"
        env.update(extra)
        return env


@pytest.fixture(scope="module")
def venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Venv:
    """``python -m venv`` with the wheel installed from the wheelhouse alone, offline.

    The environment gets no pip of its own (making one takes seconds); this pip installs
    into it with ``--python``."""
    with zipfile.ZipFile(wheel) as archive:
        info = dist_info(archive)
        metadata = email.parser.Parser().parsestr(read_text(archive, f"{info}/METADATA"))
    hard = [r for r in metadata.get_all("Requires-Dist", []) if Requirement(r).marker is None]
    pins = installed_closure(hard)
    house = wheelhouse(pins)
    root = tmp_path_factory.mktemp("venv") / "env"
    made = run([sys.executable, "-m", "venv", "--without-pip", root], cwd=root.parent)
    assert made.returncode == 0, output(made)
    constraints = root.parent / "constraints.txt"
    constraints.write_text("".join(f"{n}=={v}\n" for n, v in sorted(pins.items())), "utf-8")
    env = Venv(root, pins)
    offline = ("--no-index", "--find-links", house, "--constraint", constraints)
    # No pip configuration: an index or find-links it names must not supply a wheel here.
    quiet = {k: v for k, v in os.environ.items() if not k.upper().startswith("PIP_")}
    quiet["PIP_CONFIG_FILE"] = os.devnull
    # No byte-compiling at install: it costs seconds, and each run compiles what it imports.
    done = run(
        [*PIP, "--python", env.python, "install", "--quiet", "--no-compile", *offline, wheel],
        cwd=root.parent,
        env=quiet,
    )
    assert done.returncode == 0, output(done)
    return env


def test_environment_holds_the_wheel_and_its_dependencies(venv: Venv, tmp_path: Path) -> None:
    """Exactly arenacheck and its hard dependencies, at this environment's versions: no
    redis; arenacheck imported from the environment."""
    script = (
        "import importlib.metadata as m, json, arenacheck\n"
        "dists = {d.metadata['Name']: d.version for d in m.distributions()}\n"
        "print(json.dumps({'dists': dists, 'file': arenacheck.__file__}))\n"
    )
    done = run([venv.python, "-c", script], cwd=tmp_path, env=venv.env())
    assert done.returncode == 0, output(done)
    found = json.loads(done.stdout)
    dists = {canonicalize_name(n): v for n, v in found["dists"].items()}
    assert dists == {**venv.pins, "arenacheck": importlib.metadata.version("arenacheck")}
    assert "redis" not in dists
    assert Path(found["file"]).resolve().is_relative_to(venv.root.resolve())


def test_backends_command(venv: Venv, tmp_path: Path) -> None:
    """The environment's ``arenacheck backends`` lists the four backends."""
    done = run([venv.script("arenacheck"), "backends"], cwd=tmp_path, env=venv.env())
    assert done.returncode == 0, output(done)
    listed = [line.split()[0] for line in done.stdout.splitlines() if line.strip()]
    assert listed == list(BACKEND_NAMES), output(done)
    assert sorted(listed) == ["posix-native", "win32-emulated", "win32-native", "win32-wine"]


# ------------------------------------------------------------------- a user's project

USER_FILES = {
    "pytest.ini": """\
        [pytest]
        testpaths = tests
        """,
    "model/__init__.py": '''\
        """The project's own model package: arenacheck has a subpackage of that name."""
        OWNER = "userproject"
        ''',
    "model/arena.py": 'OWNER = "userproject"\n',
    "impl/__init__.py": '''\
        """The project's own impl package: arenacheck has a subpackage of that name."""
        OWNER = "userproject"
        ''',
    "impl/backend.py": 'NAME = "userproject-backend"\n',
    "conftest.py": '''\
        """The project's own profiles, named as arenacheck's are, and its own --backend."""
        import os

        import pytest
        from hypothesis import settings

        settings.register_profile("ci", max_examples=7, derandomize=True, database=None)
        # A backend that is not Hypothesis's default: arenacheck's profiles must not take it.
        settings.register_profile(
            "dev", max_examples=11, database=None, backend="hypothesis-urandom"
        )
        settings.load_profile(os.environ.get("USERPROJECT_PROFILE", "ci"))


        def pytest_addoption(parser):
            parser.addoption("--backend", default="userland", help="the project's backend")


        @pytest.fixture
        def backend(request):
            return request.config.getoption("backend")
        ''',
    "tests/test_own.py": """\
        import sys
        from pathlib import Path

        from hypothesis import given, settings, strategies as st

        import impl.backend
        import model.arena

        PROJECT = Path(__file__).resolve().parents[1]
        PLUGIN_IMPORTS = set(PLUGIN_IMPORTS_LITERAL)


        def test_own_packages():
            assert Path(model.__file__).resolve() == PROJECT / "model" / "__init__.py"
            assert Path(model.arena.__file__).resolve() == PROJECT / "model" / "arena.py"
            assert Path(impl.__file__).resolve() == PROJECT / "impl" / "__init__.py"
            assert Path(impl.backend.__file__).resolve() == PROJECT / "impl" / "backend.py"
            assert impl.backend.NAME == "userproject-backend"


        def test_own_profile():
            assert settings._current_profile == "ci"
            assert settings().max_examples == 7
            assert settings().backend == "hypothesis"
            assert [p for p in settings._profiles if "arenacheck" in p] == []


        def test_given_runs_the_profiles_examples():
            seen = []

            @given(st.integers())
            def examples(n):
                seen.append(n)

            examples()
            assert len(seen) == 7


        @given(st.integers())
        def test_given_itself(n):
            assert settings().max_examples == 7


        def test_own_option(backend, request):
            assert backend == "mine"
            assert request.config.getoption("arenacheck_backend") == []
            assert request.config.pluginmanager.has_plugin("arenacheck")


        def test_nothing_of_arenacheck_imported_but_its_plugin():
            loaded = {n for n in sys.modules if n == "arenacheck" or n.startswith("arenacheck.")}
            assert loaded == PLUGIN_IMPORTS
            plugin = Path(sys.modules["arenacheck.harness.pytest_plugin"].__file__).resolve()
            assert plugin.is_relative_to(Path(sys.prefix).resolve())
            assert "redis" not in sys.modules
            assert "hypothesis.extra.redis" not in sys.modules
        """,
    "arenacheck_tests/test_with_arenacheck.py": """\
        import os
        from pathlib import Path

        import pytest
        from hypothesis import settings

        PROJECT = Path(__file__).resolve().parents[1]
        BROKEN = "arenacheck.faults.broken_arenas:SecondFreeCallsOS"


        def test_backend_fixture(arenacheck_backend):
            from arenacheck.backends.registry import open_backend

            assert arenacheck_backend == "win32-emulated"
            assert open_backend(arenacheck_backend).name == "win32-emulated"


        def test_machine_keeps_examples_in_the_project(arenacheck_backend, tmp_path):
            from arenacheck.harness.profiles import arenacheck_settings
            from arenacheck.harness.runner import run_machine
            from arenacheck.machines.arena import machine_for
            from arenacheck.backends.recording import FenceViolation

            own = (settings._current_profile, settings().max_examples, settings().backend)
            assert own == ("dev", 11, "hypothesis-urandom")
            machine = machine_for(arenacheck_backend, "small", impl=BROKEN)
            with pytest.raises(FenceViolation):
                run_machine(machine, backend_name=arenacheck_backend, write_failures_to=tmp_path)
            assert len(list(tmp_path.glob("*.json"))) == 1
            assert (settings._current_profile, settings().max_examples, settings().backend) == own
            chosen = arenacheck_settings()
            assert (chosen.max_examples, chosen.backend) == (300, "hypothesis")
            examples = PROJECT / ".hypothesis" / "examples"
            assert Path(chosen.database.path).resolve() == examples
            assert any(p.is_file() for p in examples.rglob("*"))
            assert not (Path.cwd() / ".hypothesis" / "examples").exists()
            import arenacheck

            assert not (Path(arenacheck.__file__).parent / ".hypothesis").exists()
        """,
}
USER_TESTS = 6
HEADER_LINE = re.compile(r"^arenacheck backend ", re.MULTILINE)


def write_project(root: Path) -> Path:
    for name, text in USER_FILES.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        text = textwrap.dedent(text).replace("PLUGIN_IMPORTS_LITERAL", repr(PLUGIN_IMPORTS))
        path.write_text(text, "utf-8")
    (root / "elsewhere").mkdir()
    return root


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A project with its own ``model`` and ``impl``, ``ci`` and ``dev`` profiles and
    ``--backend`` option; its tests check that these stay its own."""
    return write_project(tmp_path / "userproject")


def outcome(done: subprocess.CompletedProcess[str]) -> str:
    """pytest's closing line without its timing: ``6 passed``, ``1 failed, 5 passed``."""
    closing = re.findall(r"^=+ (.+?) in \d+(?:\.\d+)?s\b.*=+$", done.stdout, re.MULTILINE)
    assert closing, output(done)
    return str(closing[-1])


def pytest_in(venv: Venv, *args: str) -> list[str]:
    # Append mode puts the project after site-packages on sys.path: a ``model`` or ``impl``
    # that the wheel installed at the top would shadow the project's, and the tests see it.
    return [str(venv.script("pytest")), "-p", "no:cacheprovider", "--import-mode=append", *args]


def test_plugin_is_invisible_to_a_project_that_does_not_use_it(venv: Venv, project: Path) -> None:
    """Its own packages, profile, option and ``@given`` counts; no arenacheck module beyond
    the plugin's names, no header line, though the plugin is loaded."""
    done = run(pytest_in(venv, "--backend", "mine"), cwd=project, env=venv.env())
    assert done.returncode == 0, output(done)
    assert outcome(done) == f"{USER_TESTS} passed", output(done)
    assert not HEADER_LINE.search(done.stdout), output(done)
    (plugins,) = re.findall(r"^plugins: (.*)$", done.stdout, re.MULTILINE)
    assert f"arenacheck-{importlib.metadata.version('arenacheck')}" in plugins.split(", ")


@pytest.mark.parametrize(
    ("args", "header", "expected"),
    [
        (["--arenacheck-backend", "win32-emulated"], True, "2 passed"),
        # No option: the fixture alone uses arenacheck, and its examples still belong to
        # the project pytest runs in, not to the working directory.
        (["-k", "win32-emulated"], False, f"2 passed, {2 * len(BACKEND_NAMES) - 2} deselected"),
    ],
    ids=["option", "fixture-only"],
)
def test_plugin_in_use_keeps_examples_in_the_project(
    venv: Venv, project: Path, args: list[str], header: bool, expected: str
) -> None:
    """A project's test of its own on win32-emulated, and a failing arenacheck machine run
    from below the project's root: the example database is the project's, the project's
    profile stays loaded, and the header reports the backend only when asked."""
    env = venv.env(USERPROJECT_PROFILE="dev", ARENACHECK_PROFILE="ci")
    cwd = project / "elsewhere"
    tests = str(project / "arenacheck_tests")
    done = run(pytest_in(venv, *args, tests), cwd=cwd, env=env)
    assert done.returncode == 0, output(done)
    assert outcome(done) == expected, output(done)
    lines = HEADER_LINE.findall(done.stdout)
    if header:
        assert "arenacheck backend win32-emulated: available" in done.stdout, output(done)
        assert len(lines) == 1, output(done)
    else:
        assert not lines, output(done)


def test_c_arena_builds_from_the_installed_wheel(venv: Venv, project: Path, tmp_path: Path) -> None:
    """``load_library`` compiles the wheel's ``native/c_arena.c`` into ARENACHECK_BUILD_DIR,
    and an arena made with it on posix-native allocates, writes and reads."""
    reason = c_arena.unavailable_reason()
    if reason is not None:
        if required(REQUIRE_CC_ENV):
            pytest.fail(f"{REQUIRE_CC_ENV} is set, but the C arena cannot be built: {reason}")
        pytest.skip(reason)
    build = tmp_path / "native-build"
    script = textwrap.dedent(
        """\
        import json, sys
        from pathlib import Path

        import arenacheck
        from arenacheck.impl.c_arena import CArena, load_library, unavailable_reason
        from arenacheck.impl.native import NATIVE_DIR
        from arenacheck.impl.posix_backend import PosixBackend
        from arenacheck.model.geometry import Geometry

        reason = unavailable_reason()
        if reason is not None:
            sys.exit(f"the installed C arena cannot be built: {reason}")
        library = load_library()
        backend = PosixBackend()
        geometry = Geometry.small(backend.page, backend.granularity)
        arena = CArena.new(backend, geometry, library=library)
        addr = arena.alloc(64, 16)
        arena.write(addr, b"arenacheck" * 6)
        print(json.dumps({
            "arenacheck": arenacheck.__file__,
            "native": str(NATIVE_DIR),
            "library": str(library.path),
            "addr": addr,
            "bounds": [arena.start, arena.footer],
            "read": arena.read(addr, 60).decode(),
        }))
        arena.free()
        """
    )
    done = run(
        [venv.python, "-c", script], cwd=project, env=venv.env(ARENACHECK_BUILD_DIR=str(build))
    )
    assert done.returncode == 0, output(done)
    found = json.loads(done.stdout)
    inside = venv.root.resolve()
    assert Path(found["arenacheck"]).resolve().is_relative_to(inside)
    assert Path(found["native"]).resolve().is_relative_to(inside)
    assert Path(found["library"]).parent == build.resolve()
    assert [p.name for p in build.iterdir() if p.suffix in (".so", ".dylib")] == [
        Path(found["library"]).name
    ]
    start, footer = found["bounds"]
    assert found["addr"] % 16 == 0 and start <= found["addr"] and found["addr"] + 64 <= footer
    assert found["read"] == "arenacheck" * 6
