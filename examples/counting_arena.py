"""A plugin that delegates to the built-in arena and changes one behaviour.

    python -m pytest -n auto --arenacheck-impl examples.counting_arena:CountingArena

Every machine then checks ``CountingArena`` instead of ``arenacheck.impl.arena.Arena``.
"""

from __future__ import annotations

from arenacheck.impl.arena import Arena


class CountingArena(Arena):
    """The built-in arena, counting the allocations it hands out."""

    handed_out = 0

    def try_alloc(self, size: object, align: object = 1) -> int | None:
        addr = super().try_alloc(size, align)
        if addr is not None:
            CountingArena.handed_out += 1
        return addr
