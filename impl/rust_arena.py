"""The Rust arena of ``examples/rust_arena`` through the C ABI of ``native/c_arena.h``.

The same adapter as the C arena's (:class:`~arenacheck.impl.c_arena.CArena`), on the Rust
library: built for this host on first use (:mod:`arenacheck.impl.rust_build`), or staged
for a process that cannot build it. :class:`RustArena` makes its OS calls through the
backend's table; :class:`RustArenaDirect` makes its own (mmap and mprotect, or VirtualAlloc
and VirtualFree on Windows), seen by a harness only through the OS's view.

Name them to the harness as ``arenacheck.impl.rust_arena:RustArena`` or
``arenacheck.impl.rust_arena:RustArenaDirect``.
"""

from __future__ import annotations

import functools
import os
from typing import ClassVar

from arenacheck.impl import rust_build
from arenacheck.impl.c_abi import CArenaLibrary
from arenacheck.impl.c_arena import CArena
from arenacheck.impl.c_load import load_library
from arenacheck.impl.native_build import BUILD_DIR_ENV


@functools.cache
def _load(faults: tuple[str, ...], environment: tuple[str, ...]) -> CArenaLibrary:
    del environment  # the cache key: the build reads each variable itself
    return load_library(rust_build.library_path(faults))


def load_rust_library(faults: tuple[str, ...] = ()) -> CArenaLibrary:
    """The Rust library with ``faults`` (seeded bugs of ``rust_build.FAULTS``), loaded once
    per process, variant and build configuration."""
    environment = tuple(
        os.environ.get(name, "")
        for name in (rust_build.PREBUILT_ENV, rust_build.RUSTC_ENV, BUILD_DIR_ENV, "PATH")
    )
    return _load(tuple(sorted(set(faults))), environment)


def unavailable_reason(faults: tuple[str, ...] = ()) -> str | None:
    """Why the Rust library cannot be had here, or None."""
    return rust_build.unavailable_reason(faults)


class RustArena(CArena):
    """The Rust arena, its OS calls through the backend's table."""

    # The seeded bugs compiled in; none in the arena itself.
    faults: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def default_library(cls) -> CArenaLibrary:
        return load_rust_library(cls.faults)


class RustArenaDirect(RustArena):
    """The Rust arena making its own OS calls, as oxc's fixed-size arena does."""

    makes_os_calls_itself = True
