"""Compiling the bundled C arena (``native/c_arena.c``) with the system C compiler.

The sources are read from :data:`arenacheck.impl.native.NATIVE_DIR`, which is the
checkout's ``native/`` or an installed wheel's package data. The library goes to a private
per-user build directory (:func:`build_dir`), never beside the sources, which may be
read-only; its name carries a key over the sources, compiler, flags and preprocessor
defines, so that a changed source, an upgraded wheel, another compiler or another variant
(the seeded faults of :data:`FAULT_DEFINES`) builds anew instead of loading a stale file or
another variant's library.
"""

from __future__ import annotations

import hashlib
import os
import platform
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from arenacheck.impl import host
from arenacheck.impl.native import native_source

SOURCE = native_source("c_arena.c")
HEADER = native_source("c_arena.h")
CFLAGS = ("-std=c11", "-O2", "-shared", "-fPIC", "-Wall", "-Wextra", "-Werror")
BUILD_DIR_ENV = "ARENACHECK_BUILD_DIR"
# Seeded bugs of c_arena.c, each compiled in by one define; none is in the default build.
WRITE_BELOW_START = "ARENACHECK_FAULT_WRITE_BELOW_START"
FAULT_DEFINES = frozenset({WRITE_BELOW_START})
_DEFINE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class CompileError(RuntimeError):
    """The native arena could not be built; the message carries the compiler's output."""


def compiler_command() -> list[str] | None:
    """``$CC`` split like a shell would (it may carry flags), else cc, gcc or clang."""
    cc = os.environ.get("CC", "").strip()
    if cc:
        try:
            argv = shlex.split(cc)
        except ValueError:
            return None
        exe = shutil.which(argv[0]) if argv else None
        return [exe, *argv[1:]] if exe else None
    for name in ("cc", "gcc", "clang"):
        exe = shutil.which(name)
        if exe:
            return [exe]
    return None


def compiler_unavailable_reason() -> str | None:
    """Why the bundled C arena cannot be built here, or None when a compiler is at hand.

    A compiler that is present but fails on the source is not a reason to skip: that is a
    bug, and :func:`build_library` raises :class:`CompileError` with the compiler's output.
    """
    missing = [p for p in (SOURCE, HEADER) if not p.is_file()]
    if missing:
        return (
            f"the C arena's source is missing ({', '.join(map(str, missing))}): arenacheck "
            "was installed without its native/ directory; install it from a checkout"
        )
    if sys.platform == "win32":
        return "the C arena is built with a POSIX compiler driver and uses mmap; this is Windows"
    if compiler_command() is None:
        cc = os.environ.get("CC", "").strip()
        if cc:
            return f"CC={cc!r} does not name an executable on PATH"
        return "no C compiler: CC is unset and none of cc, gcc, clang is on PATH"
    return None


def _library_suffix() -> str:
    return ".dylib" if host.IS_DARWIN else ".so"


def build_dir() -> Path:
    """Where built libraries go: ``$ARENACHECK_BUILD_DIR``, else a per-user temp directory.

    The directory must belong to this user and be writable by nobody else: a library loaded
    from it runs in this process, so anyone able to replace it could run code here.
    """
    if sys.platform == "win32":
        raise CompileError("the C arena is not built on Windows")
    chosen = os.environ.get(BUILD_DIR_ENV, "").strip()
    if chosen:
        directory = Path(chosen)
    else:
        directory = Path(tempfile.gettempdir()) / f"arenacheck-native-{os.getuid()}"
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = directory.stat()
    if info.st_uid != os.getuid() or info.st_mode & 0o022:
        raise CompileError(
            f"the build directory {directory} is not private to this user (owner uid "
            f"{info.st_uid}, mode {info.st_mode & 0o777:o}); set {BUILD_DIR_ENV} to a "
            "directory only you can write"
        )
    return directory


def _compiler_identity(cc: list[str]) -> bytes:
    """What ``--version`` says, so that a compiler upgraded in place rebuilds."""
    try:
        done = subprocess.run(
            [*cc, "--version"], capture_output=True, timeout=60, check=False, stdin=None
        )
    except (OSError, subprocess.SubprocessError):
        return b""
    return done.stdout


def _define_flags(defines: tuple[str, ...]) -> list[str]:
    """``-DNAME`` for each define, sorted: a variant is a set of names, not their order."""
    for name in defines:
        if not _DEFINE_NAME.fullmatch(name):
            raise CompileError(f"{name!r} is not a preprocessor name")
    return [f"-D{name}" for name in sorted(set(defines))]


def _build_key(cc: list[str], defines: tuple[str, ...] = ()) -> str:
    """A digest of everything the library's bytes depend on, the sources' contents first."""
    digest = hashlib.sha256()
    parts = (
        SOURCE.read_bytes(),
        HEADER.read_bytes(),
        "\0".join(cc).encode(),
        "\0".join(CFLAGS).encode(),
        "\0".join(_define_flags(defines)).encode(),
        _compiler_identity(cc),
        f"{sys.platform} {platform.machine()}".encode(),
    )
    for part in parts:
        # Length-prefixed, so that no two different inputs hash the same concatenation.
        digest.update(len(part).to_bytes(8, "little"))
        digest.update(part)
    return digest.hexdigest()[:24]


def build_library(defines: tuple[str, ...] = ()) -> Path:
    """Compile ``native/c_arena.c`` once per source, compiler and set of ``defines``; return
    the library's path. Two sets of defines never share a library file.

    Parallel builders (pytest-xdist workers) never see a half-written library: each
    compiles to its own temporary file and renames it into place, which is atomic; two
    racing builders produce the same bytes, and a library already loaded keeps its inode.
    """
    reason = compiler_unavailable_reason()
    if reason is not None:
        raise CompileError(reason)
    cc = compiler_command()
    assert cc is not None
    directory = build_dir()
    suffix = _library_suffix()
    flags = _define_flags(defines)
    target = directory / f"c_arena-{_build_key(cc, defines)}{suffix}"
    if target.is_file():
        return target
    fd, tmp_name = tempfile.mkstemp(prefix=".c_arena-", suffix=suffix, dir=directory)
    os.close(fd)
    tmp = Path(tmp_name)
    command = [*cc, *CFLAGS, *flags, "-o", str(tmp), str(SOURCE)]
    try:
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
        except (OSError, subprocess.SubprocessError) as e:
            raise CompileError(f"{shlex.join(command)} could not run: {e}") from e
        if done.returncode != 0:
            raise CompileError(
                f"{shlex.join(command)} failed with status {done.returncode}:\n"
                f"{done.stderr}{done.stdout}"
            )
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return target
