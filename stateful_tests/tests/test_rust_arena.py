"""Building the Rust arena of ``examples/rust_arena``: the toolchain chosen, the libraries
kept apart, the Windows DLL cross-built, and the crate as its author builds it with cargo.

What the arena does is checked with the C arena's tests (``test_c_arena.py``, flavour
``rust``), and its seeded faults in ``test_rust_faults.py``. Without rustc these skip with
the reason, unless ARENACHECK_REQUIRE_RUST=1 (then they fail).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from arenacheck.impl import rust_build
from arenacheck.impl.c_abi import ABI_VERSION, CArenaLibrary
from arenacheck.impl.c_load import load_library
from arenacheck.impl.native_build import BUILD_DIR_ENV, CompileError

from stateful_tests.tests.native_flavours import REQUIRE_RUST_ENV, RUST, required

ROOT = Path(__file__).resolve().parents[2]
# Compilers that must be among those at hand, as MAJOR.MINOR[,...]: CI names Debian 12's
# 1.63, the oldest the crate promises to build with.
REQUIRE_VERSIONS_ENV = "ARENACHECK_REQUIRE_RUSTC_VERSIONS"
EXPORTS = (
    "c_arena_abi_version",
    "c_arena_create",
    "c_arena_alloc",
    "c_arena_reset",
    "c_arena_free",
    "c_arena_destroy",
    "c_arena_alive",
    "c_arena_reservation",
    "c_arena_container",
    "c_arena_footer",
    "c_arena_start",
    "c_arena_cursor",
    "c_arena_committed_bytes",
    "c_arena_last_os_error",
)


def needs(reason: str | None, what: str) -> None:
    """Skip for ``reason``, or fail when ARENACHECK_REQUIRE_RUST asks for ``what``."""
    if reason is None:
        return
    if required(REQUIRE_RUST_ENV):
        pytest.fail(f"{REQUIRE_RUST_ENV} is set, but {what}: {reason}")
    pytest.skip(f"{what}: {reason}")


@pytest.fixture
def builds_here(monkeypatch: pytest.MonkeyPatch) -> None:
    """A process that builds for itself: no staged libraries, a toolchain for this host.

    A process given staged libraries and no toolchain (Windows Python under Wine) has what
    ARENACHECK_REQUIRE_RUST asks for; building is checked where they were built.
    """
    staged = os.environ.get(rust_build.PREBUILT_ENV, "").strip()
    monkeypatch.delenv(rust_build.PREBUILT_ENV, raising=False)
    reason = rust_build.unavailable_reason()
    if staged and reason is not None:
        pytest.skip(
            f"this process loads the libraries staged in {staged}; it cannot build: {reason}"
        )
    needs(reason, "the Rust arena cannot be built here")


@pytest.fixture
def private_build(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    directory = tmp_path / "build"
    monkeypatch.setenv(BUILD_DIR_ENV, str(directory))
    yield directory


def version_of(rustc: str) -> tuple[int, int]:
    out = subprocess.run([rustc, "--version"], capture_output=True, text=True, check=True).stdout
    found = re.match(r"rustc (\d+)\.(\d+)", out)
    assert found, out
    return int(found[1]), int(found[2])


def test_the_library_is_built_outside_the_source_tree_one_file_per_variant(
    builds_here: None, private_build: Path
) -> None:
    correct = rust_build.build_library()
    assert not correct.resolve().is_relative_to(ROOT) and correct.parent == private_build
    assert load_library(correct).abi_version == ABI_VERSION
    variants = {f: rust_build.build_library((f,)) for f in rust_build.FAULTS}
    assert len({correct, *variants.values()}) == 1 + len(rust_build.FAULTS)
    assert all(f in p.name for f, p in variants.items())
    fault = rust_build.FAULTS[0]
    assert rust_build.build_library((fault, fault)) == variants[fault], "a set, not a list"
    mtime = correct.stat().st_mtime_ns
    assert rust_build.build_library() == correct and correct.stat().st_mtime_ns == mtime
    # The libraries and nothing else: a compiler's by-products stay in its scratch folder.
    assert sorted(private_build.iterdir()) == sorted({correct, *variants.values()})
    assert private_build.stat().st_mode & 0o077 == 0 or sys.platform == "win32"
    with pytest.raises(ValueError, match="not a seeded fault"):
        rust_build.build_library(("NDEBUG",))


def test_the_crate_builds_with_every_rustc_at_hand(
    builds_here: None, private_build: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every rustc on PATH, Debian's 1.63 among them in CI: the crate uses nothing later."""
    candidates = rust_build.rustc_candidates()
    versions = {}
    for rustc in candidates:
        monkeypatch.setenv(rust_build.RUSTC_ENV, rustc)
        chain = rust_build.toolchain()
        assert not isinstance(chain, str), chain
        path = rust_build.build_library()
        lib = CArenaLibrary(path)
        assert lib.abi_version == ABI_VERSION
        versions[rustc] = version_of(rustc)
    assert versions, "no rustc was tried"
    for wanted in os.environ.get(REQUIRE_VERSIONS_ENV, "").split(","):
        if wanted.strip():
            major, minor = (int(part) for part in wanted.strip().split("."))
            assert (major, minor) in versions.values(), (
                f"{REQUIRE_VERSIONS_ENV} asks for rustc {wanted.strip()}; found {versions}"
            )


@pytest.mark.skipif(sys.platform == "win32", reason="the fake compilers are POSIX shell scripts")
def test_the_first_rustc_with_the_targets_library_is_chosen(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folders = []
    for name, has_windows in (("first", False), ("second", True)):
        folder = tmp_path / name
        sysroot = folder / "sysroot"
        (sysroot / "lib" / "rustlib" / "x86_64-unknown-linux-gnu" / "lib").mkdir(parents=True)
        if has_windows:
            (sysroot / "lib" / "rustlib" / rust_build.WINDOWS_GNU / "lib").mkdir(parents=True)
        script = folder / "rustc"
        script.write_text(
            "#!/bin/sh\n"
            f'if [ "$1" = "--print" ]; then echo {sysroot}; else echo "rustc 9.9.9 {name}"; fi\n'
        )
        script.chmod(0o755)
        folders.append(str(folder))
    linker = tmp_path / "linker"
    linker.mkdir()
    (linker / rust_build.WINDOWS_GNU_LINKER).write_text("#!/bin/sh\n")
    (linker / rust_build.WINDOWS_GNU_LINKER).chmod(0o755)
    monkeypatch.delenv(rust_build.RUSTC_ENV, raising=False)
    monkeypatch.setenv("PATH", ":".join([*folders, str(linker)]))
    assert rust_build.rustc_candidates() == [f"{f}/rustc" for f in folders]
    host_chain = rust_build.toolchain()
    assert not isinstance(host_chain, str) and host_chain.rustc == f"{folders[0]}/rustc"
    windows = rust_build.toolchain(rust_build.WINDOWS_GNU)
    assert not isinstance(windows, str) and windows.rustc == f"{folders[1]}/rustc"
    assert windows.flags() == [
        f"--target={rust_build.WINDOWS_GNU}",
        f"-Clinker={linker / rust_build.WINDOWS_GNU_LINKER}",
    ]
    monkeypatch.setenv("PATH", folders[0] + ":" + str(linker))
    reason = rust_build.toolchain(rust_build.WINDOWS_GNU)
    assert isinstance(reason, str) and "libstd-rust-dev-windows" in reason
    monkeypatch.setenv("PATH", ":".join(folders))
    reason = rust_build.toolchain(rust_build.WINDOWS_GNU)
    assert isinstance(reason, str) and rust_build.WINDOWS_GNU_LINKER in reason


def test_missing_rustc_skips_with_its_reason_or_fails_when_required(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(rust_build.PREBUILT_ENV, raising=False)
    monkeypatch.delenv(rust_build.RUSTC_ENV, raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert rust_build.unavailable_reason() == "no rustc on PATH (Debian: apt-get install rustc)"
    monkeypatch.setenv(rust_build.RUSTC_ENV, str(tmp_path / "nonexistent-rustc"))
    reason = rust_build.unavailable_reason()
    assert reason is not None and "nonexistent-rustc" in reason
    monkeypatch.setenv(REQUIRE_RUST_ENV, "0")
    with pytest.raises(pytest.skip.Exception, match="no rustc"):
        RUST.library_or_skip()
    monkeypatch.setenv(REQUIRE_RUST_ENV, "1")
    with pytest.raises(pytest.fail.Exception, match=f"{REQUIRE_RUST_ENV} is set"):
        RUST.library_or_skip()
    with pytest.raises(CompileError, match="no rustc"):
        rust_build.build_library()


def test_staged_libraries_are_loaded_by_name(
    builds_here: None, private_build: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """How a process that cannot build (Windows Python under Wine) gets every variant."""
    staged = rust_build.stage(tmp_path / "staged")
    names = sorted(p.name for p in staged)
    suffix = Path(rust_build.library_name()).suffix
    assert names == sorted(
        ["rust_arena" + suffix, *(f"rust_arena-{f}{suffix}" for f in rust_build.FAULTS)]
    )
    monkeypatch.setenv(rust_build.PREBUILT_ENV, str(tmp_path / "staged"))
    monkeypatch.setenv("PATH", str(tmp_path))  # no compiler is needed now
    fault = rust_build.FAULTS[0]
    assert rust_build.unavailable_reason((fault,)) is None
    assert rust_build.library_path((fault,)) == tmp_path / "staged" / f"rust_arena-{fault}{suffix}"
    (tmp_path / "staged" / f"rust_arena-{fault}{suffix}").unlink()
    reason = rust_build.unavailable_reason((fault,))
    assert reason is not None and f"holds no rust_arena-{fault}" in reason
    with pytest.raises(CompileError, match="holds no"):
        rust_build.library_path((fault,))


def windows_toolchain() -> None:
    chain = rust_build.toolchain(rust_build.WINDOWS_GNU)
    needs(chain if isinstance(chain, str) else None, "the Windows DLL cannot be cross-built")


@pytest.mark.skipif(sys.platform == "win32", reason="cross-built on Linux for Windows")
def test_the_windows_dll_exports_the_abi_and_needs_only_windows(private_build: Path) -> None:
    """The DLL Windows Python loads: a PE file exporting exactly c_arena.h's functions,
    importing only DLLs that every Windows has (nothing of mingw's own runtime)."""
    needs(rust_build.source_missing_reason(), "the crate is missing")
    windows_toolchain()
    dll = rust_build.build_library(target=rust_build.WINDOWS_GNU)
    assert dll.suffix == ".dll" and dll.read_bytes()[:2] == b"MZ"
    objdump = shutil.which("x86_64-w64-mingw32-objdump")
    needs(None if objdump else "x86_64-w64-mingw32-objdump is missing", "the DLL's tables")
    assert objdump is not None
    table = subprocess.run([objdump, "-p", str(dll)], capture_output=True, text=True, check=True)
    exported = set(re.findall(r"\] (c_arena_\w+)", table.stdout))
    assert exported == set(EXPORTS)
    imported = {name.lower() for name in re.findall(r"DLL Name: (\S+)", table.stdout)}
    assert imported and not {n for n in imported if n.startswith(("libgcc", "libwinpthread"))}


def test_cargo_builds_the_crate_as_its_author_would(builds_here: None, tmp_path: Path) -> None:
    """``cargo build --release`` in a copy of the crate (no target/ in the checkout)."""
    cargo = shutil.which("cargo")
    needs(None if cargo else "no cargo on PATH", "the crate's own build cannot run")
    assert cargo is not None
    before = (rust_build.CRATE_DIR / "target").exists()
    crate = tmp_path / "rust_arena"
    shutil.copytree(rust_build.CRATE_DIR, crate, ignore=shutil.ignore_patterns("target"))
    done = subprocess.run(
        [cargo, "build", "--release", "--offline", "--quiet"],
        cwd=crate,
        capture_output=True,
        text=True,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, done.stderr
    # Cargo's name for a cdylib: lib-prefixed everywhere but on Windows.
    prefix = "" if sys.platform == "win32" else "lib"
    built = crate / "target" / "release" / (prefix + rust_build.library_name())
    assert CArenaLibrary(built).abi_version == ABI_VERSION
    assert (rust_build.CRATE_DIR / "target").exists() == before, "cargo wrote into the tree"
