"""Building the Rust arena of ``examples/rust_arena`` with ``rustc``, for this host or for
Windows (``x86_64-pc-windows-gnu``, linked by mingw-w64's gcc).

``rustc`` itself, not cargo: the crate has no dependencies, and Debian's ``rustc`` (the one
with ``libstd-rust-dev-windows``) comes without cargo. Each library goes to the private
build directory of :mod:`arenacheck.impl.native_build`, named by a key over the crate's
sources, the compiler's ``-vV``, the target and the seeded faults (:data:`FAULTS`, each a
``--cfg fault="..."``), so that no two variants or compilers share a file.

The compiler is the first ``rustc`` along ``PATH`` (or ``$ARENACHECK_RUSTC``) whose sysroot
holds the target's standard library: rustup's ``rustc`` may come first and lack the Windows
target that Debian's has.

A process that cannot build (Windows Python under Wine, which cannot run Linux's ``rustc``)
loads libraries built beforehand from ``$ARENACHECK_RUST_ARENA_DIR`` instead, under the
names :func:`library_name` gives; :func:`stage` puts them there.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from arenacheck.impl import host
from arenacheck.impl.native_build import CompileError, build_dir, build_into, build_key

# The checkout's examples/ (a wheel ships no examples: there the crate is missing).
CRATE_DIR = Path(__file__).resolve().parents[1] / "examples" / "rust_arena"
CRATE_ROOT = CRATE_DIR / "src" / "lib.rs"
RUSTC_ENV = "ARENACHECK_RUSTC"
PREBUILT_ENV = "ARENACHECK_RUST_ARENA_DIR"
# Set (to anything but 0), a Rust arena that cannot be had here fails instead of skipping.
REQUIRE_ENV = "ARENACHECK_REQUIRE_RUST"
WINDOWS_GNU = "x86_64-pc-windows-gnu"
WINDOWS_GNU_LINKER = "x86_64-w64-mingw32-gcc"
RUSTFLAGS = (
    "--edition=2021",
    "--crate-type=cdylib",
    "--crate-name=rust_arena",
    "-Copt-level=2",
    # No unwinding may cross the C ABI: a panic aborts the process, which isolation reports.
    "-Cpanic=abort",
)
# The seeded bugs of the crate, one ``--cfg fault="NAME"`` each; none is in the default build.
GROW_WITHOUT_DOUBLING = "grow_without_doubling"
ALIGN_IGNORES_MIN_ALIGN = "align_ignores_min_align"
RELEASE_CONTAINER_ONLY = "release_container_only"
ACCEPTS_BAD_ALIGN = "accepts_bad_align"
WRITE_BELOW_START = "write_below_start"
DOUBLE_FREE_RELEASES = "double_free_releases"
FAULTS = (
    GROW_WITHOUT_DOUBLING,
    ALIGN_IGNORES_MIN_ALIGN,
    RELEASE_CONTAINER_ONLY,
    ACCEPTS_BAD_ALIGN,
    WRITE_BELOW_START,
    DOUBLE_FREE_RELEASES,
)


@dataclass(frozen=True)
class Toolchain:
    """A ``rustc`` able to build for ``target`` (None: its own host), and the linker it needs."""

    rustc: str
    target: str | None
    linker: str | None
    identity: bytes

    def flags(self) -> list[str]:
        if self.target is None:
            return []
        linker = [f"-Clinker={self.linker}"] if self.linker else []
        return [f"--target={self.target}", *linker]


def _output(argv: list[str]) -> str | None:
    try:
        done = subprocess.run(
            argv, capture_output=True, text=True, timeout=60, check=False, stdin=subprocess.DEVNULL
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout if done.returncode == 0 else None


def rustc_candidates() -> list[str]:
    """``$ARENACHECK_RUSTC`` alone when set, else every ``rustc`` along ``PATH``, in order."""
    chosen = os.environ.get(RUSTC_ENV, "").strip()
    if chosen:
        exe = shutil.which(chosen)
        return [exe] if exe else []
    found: list[str] = []
    seen: set[str] = set()
    for folder in os.environ.get("PATH", "").split(os.pathsep):
        exe = shutil.which("rustc", path=folder) if folder else None
        if exe is not None and os.path.realpath(exe) not in seen:
            seen.add(os.path.realpath(exe))
            found.append(exe)
    return found


@functools.cache
def _probe(rustc: str, target: str | None) -> bytes | None:
    """``rustc -vV`` when ``rustc`` has the standard library of ``target``, else None."""
    identity = _output([rustc, "-vV"])
    sysroot = _output([rustc, "--print", "sysroot"])
    if identity is None or sysroot is None:
        return None
    if target is not None:
        std = Path(sysroot.strip()) / "lib" / "rustlib" / target / "lib"
        if not std.is_dir():
            return None
    return identity.encode()


def toolchain(target: str | None = None) -> Toolchain | str:
    """The toolchain for ``target`` (None: this host), or why there is none."""
    candidates = rustc_candidates()
    if not candidates:
        where = f"{RUSTC_ENV}={os.environ[RUSTC_ENV]!r}" if os.environ.get(RUSTC_ENV) else "PATH"
        return f"no rustc on {where} (Debian: apt-get install rustc)"
    linker = None
    if target == WINDOWS_GNU and not host.IS_WINDOWS:
        linker = shutil.which(WINDOWS_GNU_LINKER)
        if linker is None:
            return f"no {WINDOWS_GNU_LINKER} to link for {target} (apt-get install gcc-mingw-w64)"
    for rustc in candidates:
        identity = _probe(rustc, target)
        if identity is not None:
            return Toolchain(rustc, target, linker, identity)
    return (
        f"none of {', '.join(candidates)} has the standard library for {target} "
        "(Debian: apt-get install libstd-rust-dev-windows)"
        if target is not None
        else f"none of {', '.join(candidates)} answers rustc -vV"
    )


def _suffix(target: str | None) -> str:
    if target is None:
        return ".dll" if host.IS_WINDOWS else ".dylib" if host.IS_DARWIN else ".so"
    return ".dll" if "windows" in target else ".dylib" if "apple" in target else ".so"


def _faults(faults: Iterable[str]) -> tuple[str, ...]:
    """The set of ``faults`` in a fixed order, refused unless each is one of :data:`FAULTS`."""
    chosen = tuple(sorted(set(faults)))
    unknown = [f for f in chosen if f not in FAULTS]
    if unknown:
        raise ValueError(f"not a seeded fault of the Rust arena: {unknown}; known: {FAULTS}")
    return chosen


def library_name(faults: Iterable[str] = (), target: str | None = None) -> str:
    """The file name a staged library has: ``rust_arena`` and its faults, then the suffix."""
    return "rust_arena" + "".join(f"-{f}" for f in _faults(faults)) + _suffix(target)


def source_missing_reason() -> str | None:
    if CRATE_ROOT.is_file():
        return None
    return (
        f"the Rust arena's crate is missing ({CRATE_ROOT}): it lives in arenacheck's "
        "checkout (examples/rust_arena), not in the wheel"
    )


def _sources() -> list[bytes]:
    """Every source file of the crate, each as its path then its bytes."""
    files = sorted(p for p in (CRATE_DIR / "src").rglob("*.rs") if p.is_file())
    parts: list[bytes] = []
    for path in files:
        parts += [path.relative_to(CRATE_DIR).as_posix().encode(), path.read_bytes()]
    return parts


def _prebuilt_dir() -> Path | None:
    chosen = os.environ.get(PREBUILT_ENV, "").strip()
    return Path(chosen) if chosen else None


def unavailable_reason(faults: Iterable[str] = (), target: str | None = None) -> str | None:
    """Why :func:`library_path` cannot give this variant here, or None. A compiler that is
    present but fails on the crate is not a reason: that is an error of the build."""
    faults = _faults(faults)
    prebuilt = _prebuilt_dir()
    if prebuilt is not None and target is None:
        path = prebuilt / library_name(faults)
        return None if path.is_file() else f"{PREBUILT_ENV}={prebuilt} holds no {path.name}"
    missing = source_missing_reason()
    if missing is not None:
        return missing
    chain = toolchain(target)
    return chain if isinstance(chain, str) else None


def build_library(faults: Iterable[str] = (), target: str | None = None) -> Path:
    """Compile the crate for ``target`` (None: this host) with ``faults``; the library's path.
    Built once per source, compiler, target and set of faults."""
    faults = _faults(faults)
    missing = source_missing_reason()
    if missing is not None:
        raise CompileError(missing)
    chain = toolchain(target)
    if isinstance(chain, str):
        raise CompileError(chain)
    cfgs = [f'--cfg=fault="{f}"' for f in faults]
    key = build_key(
        [
            *_sources(),
            chain.identity,
            "\0".join((*RUSTFLAGS, *cfgs, *chain.flags())).encode(),
        ]
    )
    stem = library_name(faults, target).rsplit(".", 1)[0]
    out = build_dir() / f"{stem}-{key}{_suffix(target)}"
    return build_into(out, [chain.rustc, *RUSTFLAGS, *cfgs, *chain.flags(), str(CRATE_ROOT)], 1)


def library_path(faults: Iterable[str] = ()) -> Path:
    """This host's library with ``faults``: staged in ``$ARENACHECK_RUST_ARENA_DIR`` when
    that is set, else built."""
    faults = _faults(faults)
    prebuilt = _prebuilt_dir()
    if prebuilt is None:
        return build_library(faults)
    path = prebuilt / library_name(faults)
    if not path.is_file():
        raise CompileError(f"{PREBUILT_ENV}={prebuilt} holds no {path.name}")
    return path


def stage(directory: Path, target: str | None = None) -> list[Path]:
    """Build the library and every seeded variant for ``target`` into ``directory``, under
    the names :func:`library_name` gives, for a process that cannot build them itself."""
    directory.mkdir(parents=True, exist_ok=True)
    staged = []
    for faults in [(), *((f,) for f in FAULTS)]:
        built = build_library(faults, target)
        path = directory / library_name(faults, target)
        shutil.copyfile(built, path)
        staged.append(path)
    return staged
