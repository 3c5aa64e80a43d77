"""The bug zoo: realistic faults, each a plugin that changes one behaviour of the arena.

Every entry is a subclass of ``impl.arena.Arena`` (so a fault is a few lines, as a user's
own wrapper would be) with a one-line docstring naming the real-world bug class, and the
configurations in which the fault can show: a fault of the Windows release call needs a
Windows backend, one that appears only when the OS refuses a commit needs a commit limit.
"""

from __future__ import annotations

from dataclasses import dataclass

from arenacheck.faults.broken_arenas import (
    ContainerRoundedDown,
    SecondFreeCallsOS,
    UnalignedGrowCommit,
)
from arenacheck.impl.arena import Arena
from arenacheck.impl.backend import Backend
from arenacheck.impl.errors import OSCallFailed
from arenacheck.model.geometry import Geometry
from arenacheck.model.win_constants import MEM_RELEASE

_U64 = (1 << 64) - 1
_ISIZE_MAX = (1 << 63) - 1


class WrongAlignModulus(Arena):
    """Alignment offset computed modulo the wrong constant (the granularity, not 4 GiB)."""

    def __init__(
        self, backend: Backend, geometry: Geometry, reservation: int, min_align: int, pool: bool
    ) -> None:
        super().__init__(backend, geometry, reservation, min_align, pool)
        self._relayout(reservation + (-reservation) % geometry.granularity)

    def _relayout(self, container: int) -> None:
        g = self._geometry
        self._container = container
        self._container_end = container + g.container_size
        self._footer = container + g.footer_offset
        self._start = self._container_end - g.first_commit
        self._cursor = self._reset_cursor()


class AlignedBaseSkipped(WrongAlignModulus):
    """Off-by-one-alignment: an already aligned base is still bumped by a whole alignment."""

    def __init__(
        self, backend: Backend, geometry: Geometry, reservation: int, min_align: int, pool: bool
    ) -> None:
        super().__init__(backend, geometry, reservation, min_align, pool)
        a = geometry.container_align
        self._relayout(reservation - reservation % a + a)


class ZeroLengthCommit(Arena):
    """State updated before it is used: the commit size is computed from the new S (zero)."""

    def _grow_and_alloc(self, p: int) -> int | None:
        new_start = self._grow_start(p)
        if new_start is None:
            return None
        old_start, self._start = self._start, new_start
        try:
            self._backend.commit(new_start, self._start - new_start)
        except OSCallFailed:
            self._start = old_start
            return None
        self._cursor = p
        return p


class GrowNotCapped(Arena):
    """Missing clamp: the doubled commit is not capped at the container's base."""

    def _grow_start(self, p: int) -> int | None:
        if super()._grow_start(p) is None:
            return None
        committed = self._container_end - self._start
        return min(self._start - committed, p & ~(self._geometry.page - 1))


class DoublingFromWrongBase(Arena):
    """Wrong reference point: the doubled commit is measured down from the cursor, not from S."""

    def _grow_start(self, p: int) -> int | None:
        if super()._grow_start(p) is None:
            return None
        committed = self._container_end - self._start
        return min(max(self._cursor - committed, self._container), p & ~(self._geometry.page - 1))


class GrowRoundsUp(Arena):
    """Rounding in the wrong direction: the grow rounds the new start up, leaving p uncovered."""

    def _grow_start(self, p: int) -> int | None:
        if super()._grow_start(p) is None:
            return None
        page = self._geometry.page
        committed = self._container_end - self._start
        return min(max(self._start - committed, self._container), (p + page - 1) & ~(page - 1))


class StartBeforeCommit(Arena):
    """Non-atomic update: S moves before the commit is known to have succeeded."""

    def _grow_and_alloc(self, p: int) -> int | None:
        new_start = self._grow_start(p)
        if new_start is None:
            return None
        size, self._start = self._start - new_start, new_start
        try:
            self._backend.commit(new_start, size)
        except OSCallFailed:
            return None
        self._cursor = p
        return p


class MaxAllocOffByOne(Arena):
    """Fence-post error: an allocation that ends exactly at C is refused."""

    def _grow_start(self, p: int) -> int | None:
        return None if p <= self._container else super()._grow_start(p)


class WrapAroundIgnored(Arena):
    """Unsigned overflow: P - size wraps for huge sizes and the wrapped address "fits"."""

    def try_alloc(self, size: object, align: object = 1) -> int | None:
        self._live()
        from arenacheck.impl.arena import check_layout

        size, align = check_layout(size, align)
        a = max(align, self._min_align)
        p = ((self._cursor - size) & _U64) & ~(a - 1)
        if p >= self._start:
            self._cursor = p
            return p
        return self._grow_and_alloc(p)


class MinAlignIgnored(Arena):
    """Configuration ignored: MIN_ALIGN is not applied to the cursor."""

    def try_alloc(self, size: object, align: object = 1) -> int | None:
        saved, self._min_align = self._min_align, 1
        try:
            return super().try_alloc(size, align)
        finally:
            self._min_align = saved


class ReleaseWithSize(Arena):
    """API misuse: VirtualFree(MEM_RELEASE) given the reservation's size instead of 0."""

    def _release(self) -> None:
        k32 = self._backend.kernel32
        if k32 is None:
            super()._release()  # munmap does take the size
            return
        size = self._geometry.reserved_size
        if not k32.VirtualFree(self._reservation, size, MEM_RELEASE):
            raise OSCallFailed("VirtualFree", k32.get_last_error())
        self._alive = False


class ReleaseContainer(Arena):
    """Wrong pointer freed: the container base C is released instead of the reservation R."""

    def _release(self) -> None:
        self._backend.release(self._container, self._geometry.reserved_size)
        self._alive = False


class UnmapContainerSize(Arena):
    """Wrong length freed: only CONTAINER_SIZE bytes are unmapped, the rest leaks."""

    def _release(self) -> None:
        self._backend.release(self._reservation, self._geometry.container_size)
        self._alive = False


class LeakAfterFailedCommit(Arena):
    """Error path leak: a failed first commit leaves the reservation behind."""

    @classmethod
    def new(
        cls,
        backend: Backend,
        geometry: Geometry,
        min_align: int = 1,
        pool: bool = False,
        strategy: str = "reserve-commit",
    ) -> Arena:
        reservation = backend.reserve(geometry.reserved_size)
        arena = cls(backend, geometry, reservation, min_align, pool)
        backend.commit(arena._start, geometry.first_commit)
        arena._write_footer()
        return arena


class ResetDecommitsKeepsS(Arena):
    """Half-done cleanup: reset decommits the grown region but keeps S where it was."""

    def reset(self) -> None:
        super().reset()
        low = self._container_end - self._geometry.first_commit
        if self._start < low:
            self._backend.decommit(self._start, low - self._start)


class ResetForgetsGrowth(Arena):
    """Lost state: reset moves S back to the first commit without decommitting the rest."""

    def reset(self) -> None:
        super().reset()
        self._start = self._container_end - self._geometry.first_commit


class ReservationCharged(Arena):
    """The seed's bug: the whole reservation is obtained already committed."""

    @classmethod
    def new(
        cls,
        backend: Backend,
        geometry: Geometry,
        min_align: int = 1,
        pool: bool = False,
        strategy: str = "reserve-commit",
    ) -> Arena:
        reservation = backend.reserve(geometry.reserved_size)
        backend.commit(reservation, geometry.reserved_size)
        arena = cls(backend, geometry, reservation, min_align, pool)
        arena._write_footer()
        return arena


class ReturnsOldCursor(Arena):
    """Bump allocator returning the wrong end: the old cursor instead of the new one."""

    def try_alloc(self, size: object, align: object = 1) -> int | None:
        before = self._cursor if self._alive else 0
        addr = super().try_alloc(size, align)
        return None if addr is None else before


class AlignBeforeSubtract(Arena):
    """Operation order: the cursor is aligned before the size is subtracted."""

    def try_alloc(self, size: object, align: object = 1) -> int | None:
        self._live()
        from arenacheck.impl.arena import check_layout

        size, align = check_layout(size, align)
        a = max(align, self._min_align)
        p = ((self._cursor & ~(a - 1)) - size) & _U64
        if (p - self._start) & _U64 <= _ISIZE_MAX:
            self._cursor = p
            return p
        return self._grow_and_alloc(p)


@dataclass(frozen=True)
class ZooEntry:
    name: str
    # An arena class with a ``new`` factory: ``impl.arena.Arena``'s or a native arena's.
    arena: type
    backend: str = "posix-native"
    geometry: str = "small"
    commit_limit: int | None = None
    # The checks allowed to catch the fault first (any, when empty), and the longest
    # minimised program allowed (any, when 0): a fault caught by the wrong check, or
    # shrunk badly, fails the zoo as one that survived would.
    caught_by: frozenset[str] = frozenset()
    max_steps: int = 0

    @property
    def impl(self) -> str:
        return f"{self.arena.__module__}:{self.arena.__name__}"

    @property
    def doc(self) -> str:
        return (self.arena.__doc__ or "").strip().splitlines()[0]


# Room for exactly one full container: once an arena holds it, the emulated kernel refuses
# any other arena's grow and any new arena's first commit.
_LIMIT = 1 << 20

ZOO: tuple[ZooEntry, ...] = (
    ZooEntry("container-rounded-down", ContainerRoundedDown, geometry="oxc"),
    ZooEntry("wrong-align-modulus", WrongAlignModulus, geometry="oxc"),
    ZooEntry("aligned-base-skipped", AlignedBaseSkipped, "win32-emulated", "oxc"),
    ZooEntry("unaligned-grow-commit", UnalignedGrowCommit),
    ZooEntry("zero-length-commit", ZeroLengthCommit),
    ZooEntry("grow-not-capped", GrowNotCapped),
    ZooEntry("doubling-from-wrong-base", DoublingFromWrongBase),
    ZooEntry("grow-rounds-up", GrowRoundsUp),
    ZooEntry("start-before-commit", StartBeforeCommit, "win32-emulated", commit_limit=_LIMIT),
    ZooEntry("max-alloc-off-by-one", MaxAllocOffByOne),
    ZooEntry("wrap-around-ignored", WrapAroundIgnored),
    ZooEntry("min-align-ignored", MinAlignIgnored),
    ZooEntry("release-with-size", ReleaseWithSize, "win32-emulated"),
    ZooEntry("release-container", ReleaseContainer, geometry="oxc"),
    ZooEntry("unmap-container-size", UnmapContainerSize),
    ZooEntry(
        "leak-after-failed-commit", LeakAfterFailedCommit, "win32-emulated", commit_limit=_LIMIT
    ),
    ZooEntry("double-free-reaches-os", SecondFreeCallsOS),
    ZooEntry("reset-decommits-keeps-s", ResetDecommitsKeepsS),
    ZooEntry("reset-forgets-growth", ResetForgetsGrowth),
    ZooEntry("reservation-charged", ReservationCharged, "win32-emulated", commit_limit=_LIMIT),
    ZooEntry("returns-old-cursor", ReturnsOldCursor),
    ZooEntry("align-before-subtract", AlignBeforeSubtract),
)
