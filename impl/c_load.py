"""Which C arena library a process uses: one named by path, or the bundled source, built.

Each library is loaded once per process and resolved path, so that every arena of a run
shares one :class:`CArenaLibrary` and the compiler runs at most once per configuration.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

from arenacheck.impl.c_abi import CArenaLibrary
from arenacheck.impl.c_build import (
    BUILD_DIR_ENV,
    FAULT_DEFINES,
    build_library,
    compiler_unavailable_reason,
)

LIBRARY_ENV = "ARENACHECK_C_ARENA_LIB"


@functools.cache
def _load(path: str) -> CArenaLibrary:
    return CArenaLibrary(Path(path))


def load_library(path: str | os.PathLike[str] | None = None) -> CArenaLibrary:
    """The library at ``path``, else at ``$ARENACHECK_C_ARENA_LIB``, else the bundled source
    built on first use. Any library exporting the c_arena.h ABI will do. Loaded once per
    process and path."""
    if path is None:
        path = os.environ.get(LIBRARY_ENV, "").strip() or None
    if path is None:
        # Every arena asks; building (or finding the build) runs the compiler, so the answer
        # is kept per compiler and build directory for the life of the process.
        return _load_bundled(os.environ.get("CC", ""), os.environ.get(BUILD_DIR_ENV, ""), ())
    return _load(str(Path(path).resolve()))


@functools.cache
def _load_bundled(cc: str, directory: str, defines: tuple[str, ...] = ()) -> CArenaLibrary:
    del cc, directory  # the cache key: build_library reads both from the environment
    return _load(str(build_library(defines).resolve()))


def load_bundled_variant(defines: tuple[str, ...]) -> CArenaLibrary:
    """The bundled source built with ``defines`` (a seeded fault of ``c_build.FAULT_DEFINES``),
    whatever ``$ARENACHECK_C_ARENA_LIB`` names: a variant exists only of our own source.
    Loaded once per process, compiler, build directory and set of defines."""
    unknown = set(defines) - FAULT_DEFINES
    if unknown:
        raise ValueError(f"not a variant of the C arena: {sorted(unknown)}")
    key = tuple(sorted(set(defines)))
    return _load_bundled(os.environ.get("CC", ""), os.environ.get(BUILD_DIR_ENV, ""), key)


def unavailable_reason() -> str | None:
    """Why :func:`load_library` cannot work here, or None. A library named by
    ``$ARENACHECK_C_ARENA_LIB`` needs no compiler: failing to load it is an error."""
    if os.environ.get(LIBRARY_ENV, "").strip():
        return None
    return compiler_unavailable_reason()
