"""Deliberately broken Rust arenas: ``examples/rust_arena`` built with one seeded fault.

Each is :class:`~arenacheck.impl.rust_arena.RustArena` over a library compiled with one
``--cfg fault="..."`` of ``impl.rust_build.FAULTS``, built and loaded apart from the
correct library. Together they are the native zoo: one fault per class of bug a Rust
author writes (growth arithmetic, alignment, release, a bad-input check, a store to
memory never committed, misuse after free), each of which the harness must catch.
"""

from __future__ import annotations

from arenacheck.faults.zoo import ZooEntry
from arenacheck.impl import rust_build
from arenacheck.impl.rust_arena import RustArena


class RustGrowWithoutDoubling(RustArena):
    """Growth arithmetic: a grow commits only the pages the allocation needs, never double."""

    faults = (rust_build.GROW_WITHOUT_DOUBLING,)


class RustGrowWithoutDoublingDirect(RustGrowWithoutDoubling):
    """Growth arithmetic in the arena's own mmap calls, seen only through the OS's view."""

    makes_os_calls_itself = True


class RustAlignIgnoresMinAlign(RustArena):
    """Alignment: the allocation is aligned on the caller's align alone, not MIN_ALIGN too."""

    faults = (rust_build.ALIGN_IGNORES_MIN_ALIGN,)


class RustReleaseContainerOnly(RustArena):
    """Release: free gives back the container [C, C + CONTAINER_SIZE), not the reservation."""

    faults = (rust_build.RELEASE_CONTAINER_ONLY,)


class RustReleaseContainerOnlyDirect(RustReleaseContainerOnly):
    """Release by the arena's own munmap: the rest of the reservation stays mapped."""

    makes_os_calls_itself = True


class RustAcceptsBadAlign(RustArena):
    """Bad-input check: an align that is not a power of two is taken instead of refused."""

    faults = (rust_build.ACCEPTS_BAD_ALIGN,)


class RustWritesBelowStart(RustArena):
    """A store to memory never committed: the byte below S, after every allocation."""

    faults = (rust_build.WRITE_BELOW_START,)


class RustDoubleFreeReleases(RustArena):
    """Misuse after free: a second free releases the reservation again, maybe another's."""

    faults = (rust_build.DOUBLE_FREE_RELEASES,)


def _native(name: str, arena: type, caught_by: set[str], geometry: str = "small") -> ZooEntry:
    # new_arena and the one step that goes wrong, with at most a few that set it up.
    return ZooEntry(name, arena, geometry=geometry, caught_by=frozenset(caught_by), max_steps=8)


# Where two checks see the same wrong step, the one Hypothesis shrinks to may be either.
NATIVE_ZOO: tuple[ZooEntry, ...] = (
    _native("rust-grow-without-doubling", RustGrowWithoutDoubling, {"expect_calls"}),
    _native("rust-grow-without-doubling-direct", RustGrowWithoutDoublingDirect, {"check_arena"}),
    _native("rust-align-ignores-min-align", RustAlignIgnoresMinAlign, {"alloc", "expect_calls"}),
    _native("rust-release-container-only", RustReleaseContainerOnly, {"expect_calls"}, "oxc"),
    _native("rust-release-container-only-direct", RustReleaseContainerOnlyDirect, {"free"}, "oxc"),
    _native("rust-accepts-bad-align", RustAcceptsBadAlign, {"bad_layout"}),
    _native(
        "rust-writes-below-start",
        RustWritesBelowStart,
        {"child died: SIGSEGV", "child died: SIGBUS", "child died: STATUS_ACCESS_VIOLATION"},
    ),
    _native("rust-double-free-releases", RustDoubleFreeReleases, {"fence"}),
)


def unavailable_reason(entry: ZooEntry) -> str | None:
    """Why ``entry``'s library cannot be had here, or None (the Python zoo's need nothing)."""
    faults = getattr(entry.arena, "faults", None)
    if not issubclass(entry.arena, RustArena) or not isinstance(faults, tuple):
        return None
    return rust_build.unavailable_reason(faults)
