"""Deliberately broken arenas: each changes one behaviour of ``arenacheck.impl.arena.Arena``.

The harness must catch every one of them; a broken arena it cannot catch means a check
is missing.
"""

from __future__ import annotations

import ctypes

from arenacheck.harness.plugins import ArenaFactory
from arenacheck.impl.arena import Arena
from arenacheck.impl.backend import Backend
from arenacheck.model.geometry import Geometry


class ContainerRoundedDown(Arena):
    """C = R rounded *down* to CONTAINER_ALIGN: the container starts below the reservation."""

    def __init__(
        self, backend: Backend, geometry: Geometry, reservation: int, min_align: int, pool: bool
    ) -> None:
        super().__init__(backend, geometry, reservation, min_align, pool)
        self._container = reservation & ~(geometry.container_align - 1)
        self._container_end = self._container + geometry.container_size
        self._footer = self._container + geometry.footer_offset
        self._start = self._container_end - geometry.first_commit
        self._cursor = self._reset_cursor()


class UnalignedGrowCommit(Arena):
    """A grow commits from the allocation's address instead of rounding it down to a page."""

    def _grow_start(self, p: int) -> int | None:
        if super()._grow_start(p) is None:
            return None
        committed = self._container_end - self._start
        return min(max(self._start - committed, self._container), p)


class SecondFreeCallsOS(Arena):
    """``free`` forgets to check whether the arena is already dead and releases again."""

    def free(self) -> None:
        self._release()


class WritesBelowStart(Arena):
    """After each allocation, stores to the byte just below S itself, as native code would,
    not through its backend: the page is uncommitted, so the process faults."""

    def try_alloc(self, size: object, align: object = 1) -> int | None:
        addr = super().try_alloc(size, align)
        if addr is not None:
            ctypes.memset(self._start - 1, 0, 1)
        return addr


class WritesUncommittedThroughBackend(Arena):
    """After each allocation, writes the byte just below S through its backend: a page it
    never committed."""

    def try_alloc(self, size: object, align: object = 1) -> int | None:
        addr = super().try_alloc(size, align)
        if addr is not None:
            self._backend.write(self._start - 1, b"\x00")
        return addr


class ReadsUncommittedThroughBackend(Arena):
    """After each allocation, reads the byte just below S through its backend: a page it
    never committed."""

    def try_alloc(self, size: object, align: object = 1) -> int | None:
        addr = super().try_alloc(size, align)
        if addr is not None:
            self._backend.read(self._start - 1, 1)
        return addr


def factory(cls: type[Arena]) -> ArenaFactory:
    def make(backend: Backend, geometry: Geometry, min_align: int) -> Arena:
        return cls.new(backend, geometry, min_align)

    make.__name__ = f"{cls.__name__}.new"
    return make


BROKEN_ARENAS: dict[str, type[Arena]] = {
    "container-rounded-down": ContainerRoundedDown,
    "unaligned-grow-commit": UnalignedGrowCommit,
    "second-free-calls-os": SecondFreeCallsOS,
}
