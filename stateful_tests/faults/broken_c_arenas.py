"""Deliberately broken native arenas: the bundled C arena built with one seeded fault.

Each is ``impl.c_arena.CArena`` over a library compiled with one define of
``impl.c_build.FAULT_DEFINES``, built and loaded apart from the correct library, so that
the two never mix in a build directory or a process.
"""

from __future__ import annotations

from arenacheck.impl.c_abi import CArenaLibrary
from arenacheck.impl.c_arena import CArena
from arenacheck.impl.c_build import WRITE_BELOW_START
from arenacheck.impl.c_load import load_bundled_variant


class CArenaWritesBelowStart(CArena):
    """After each allocation the native code stores to the byte just below S, which is
    reserved but not committed: the process faults (SIGSEGV, or SIGBUS on some kernels)."""

    defines: tuple[str, ...] = (WRITE_BELOW_START,)

    @classmethod
    def default_library(cls) -> CArenaLibrary:
        """The library built with this fault, whatever ``$ARENACHECK_C_ARENA_LIB`` names."""
        return load_bundled_variant(cls.defines)
