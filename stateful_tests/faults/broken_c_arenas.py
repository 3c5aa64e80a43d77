"""Deliberately broken native arenas: the bundled C arena built with one seeded fault.

Each is ``impl.c_arena.CArena`` over a library compiled with one define of
``impl.c_build.FAULT_DEFINES``, built and loaded apart from the correct library, so that
the two never mix in a build directory or a process.
"""

from __future__ import annotations

from arenacheck.impl.backend import Backend
from arenacheck.impl.c_abi import CArenaLibrary
from arenacheck.impl.c_arena import CArena
from arenacheck.impl.c_build import WRITE_BELOW_START
from arenacheck.impl.c_load import load_bundled_variant
from arenacheck.model.geometry import Geometry


class CArenaWritesBelowStart(CArena):
    """After each allocation the native code stores to the byte just below S, which is
    reserved but not committed: the process faults (SIGSEGV, or SIGBUS on some kernels)."""

    defines: tuple[str, ...] = (WRITE_BELOW_START,)

    @classmethod
    def new(
        cls,
        backend: Backend,
        geometry: Geometry,
        min_align: int = 1,
        pool: bool = False,
        *,
        direct: bool | None = None,
        library: CArenaLibrary | None = None,
    ) -> CArena:
        """As :meth:`CArena.new`, on the library built with this fault unless one is given."""
        lib = library if library is not None else load_bundled_variant(cls.defines)
        return super().new(backend, geometry, min_align, pool, direct=direct, library=lib)
