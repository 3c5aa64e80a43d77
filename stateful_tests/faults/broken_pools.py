"""Deliberately broken pools: each changes one behaviour of ``arenacheck.impl.pool.ArenaPool``.

Each is a bug users of oxc's pool met or could meet; the harness must catch every one of
them, and a broken pool it cannot catch means a check is missing.
"""

from __future__ import annotations

import threading

from arenacheck.impl.backend import Backend
from arenacheck.impl.errors import PoolClosed, PoolEmpty
from arenacheck.impl.pool import ArenaPool, Behaviour, PoolArena
from arenacheck.model.geometry import Geometry


class ResetToFooter(ArenaPool):
    """``add`` resets the cursor to F, as a plain arena's reset does: the next allocations
    run over the transfer and pool metadata that sit between C + ACTIVE_SIZE and F."""

    def _reset(self, arena: PoolArena) -> None:
        arena.arena._cursor = arena.arena.footer


class LostWakeup(ArenaPool):
    """Remembers "someone waits" in one flag instead of a count. The first waiter to wake
    clears it, so with two threads waiting the second ``add`` wakes nobody: a deadlock."""

    def __init__(
        self,
        backend: Backend,
        geometry: Geometry,
        thread_count: int,
        behaviour: Behaviour = "posix",
        *,
        min_align: int = 1,
        condition: threading.Condition | None = None,
    ) -> None:
        self._has_waiter = False
        super().__init__(
            backend, geometry, thread_count, behaviour, min_align=min_align, condition=condition
        )

    def get(self) -> PoolArena:
        with self._cond:
            while True:
                if self._closed:
                    raise PoolClosed("the pool was closed")
                if self._stack:
                    return self._take()
                if self._behaviour == "posix":
                    raise PoolEmpty("get on an empty pool")
                self._has_waiter = True
                self._cond.wait()
                self._has_waiter = False

    def _push(self, arena: PoolArena) -> None:
        self._stack.append(arena)
        if self._behaviour == "windows" and self._has_waiter:
            self._cond.notify()


class ResetClearsOwnership(ArenaPool):
    """``add``'s reset also clears ``is_double_owned``: a shared arena that comes back to
    the pool then looks singly owned, so each owner's release frees the memory."""

    def _reset(self, arena: PoolArena) -> None:
        super()._reset(arena)
        arena._write_flag(False)


BROKEN_POOLS: dict[str, type[ArenaPool]] = {
    "reset-to-footer": ResetToFooter,
    "lost-wakeup": LostWakeup,
    "reset-clears-ownership": ResetClearsOwnership,
}

# The behaviours in which each bug can show: a POSIX pool never waits.
BROKEN_BEHAVIOURS: dict[str, tuple[Behaviour, ...]] = {
    "reset-to-footer": ("posix", "windows"),
    "lost-wakeup": ("windows",),
    "reset-clears-ownership": ("posix", "windows"),
}
