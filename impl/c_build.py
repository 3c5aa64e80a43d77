"""Compiling the bundled C arena (``native/c_arena.c``) with the system C compiler.

The sources are read from :data:`arenacheck.impl.native.NATIVE_DIR`, which is the
checkout's ``native/`` or an installed wheel's package data. The library goes to a private
per-user build directory (``native_build.build_dir``), never beside the sources, which may
be read-only; its name carries a key over the sources, compiler, flags and preprocessor
defines, so that a changed source, an upgraded wheel, another compiler or another variant
(the seeded faults of :data:`FAULT_DEFINES`) builds anew instead of loading a stale file or
another variant's library.
"""

from __future__ import annotations

import os
import platform
import re
import shlex
import shutil
import sys
from pathlib import Path

from arenacheck.impl import host
from arenacheck.impl.native import native_source
from arenacheck.impl.native_build import (
    BUILD_DIR_ENV,
    CompileError,
    build_dir,
    build_into,
    build_key,
    tool_identity,
)

SOURCE = native_source("c_arena.c")
HEADER = native_source("c_arena.h")
CFLAGS = ("-std=c11", "-O2", "-shared", "-fPIC", "-Wall", "-Wextra", "-Werror")
# Seeded bugs of c_arena.c, each compiled in by one define; none is in the default build.
WRITE_BELOW_START = "ARENACHECK_FAULT_WRITE_BELOW_START"
FAULT_DEFINES = frozenset({WRITE_BELOW_START})
_DEFINE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# Re-exported: callers of the C build name its directory variable and its error here.
__all__ = ["BUILD_DIR_ENV", "FAULT_DEFINES", "CompileError", "build_dir", "build_library"]


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


def _define_flags(defines: tuple[str, ...]) -> list[str]:
    """``-DNAME`` for each define, sorted: a variant is a set of names, not their order."""
    for name in defines:
        if not _DEFINE_NAME.fullmatch(name):
            raise CompileError(f"{name!r} is not a preprocessor name")
    return [f"-D{name}" for name in sorted(set(defines))]


def _build_key(cc: list[str], defines: tuple[str, ...] = ()) -> str:
    """A digest of everything the library's bytes depend on, the sources' contents first."""
    return build_key(
        (
            SOURCE.read_bytes(),
            HEADER.read_bytes(),
            "\0".join(cc).encode(),
            "\0".join(CFLAGS).encode(),
            "\0".join(_define_flags(defines)).encode(),
            tool_identity(cc),
            f"{sys.platform} {platform.machine()}".encode(),
        )
    )


def build_library(defines: tuple[str, ...] = ()) -> Path:
    """Compile ``native/c_arena.c`` once per source, compiler and set of ``defines``; return
    the library's path. Two sets of defines never share a library file, and parallel
    builders never see a half-written one (:func:`~arenacheck.impl.native_build.build_into`).
    """
    reason = compiler_unavailable_reason()
    if reason is not None:
        raise CompileError(reason)
    cc = compiler_command()
    assert cc is not None
    target = build_dir() / f"c_arena-{_build_key(cc, defines)}{_library_suffix()}"
    return build_into(target, [*cc, *CFLAGS, *_define_flags(defines), str(SOURCE)], len(cc))
