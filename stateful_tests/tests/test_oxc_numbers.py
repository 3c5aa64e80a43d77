"""The numbers oxc's own Windows tests pin, on every backend, with the oxc geometry.

Each step is checked on the implementation, against the model, and against the OS's own
view of the reservation. Tests that commit the whole 2 GiB container share one xdist
group, so that on Windows their commit charge is never taken by several workers at once.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from arenacheck.backends.registry import open_backend
from arenacheck.impl.arena import Arena
from arenacheck.impl.backend import Backend
from arenacheck.impl.errors import ArenaFull
from arenacheck.model.arena import ArenaModel
from arenacheck.model.geometry import GIB, KIB, Geometry

COMMIT_HEAVY = pytest.mark.xdist_group("commit-heavy")


@pytest.fixture
def backend(backend_name: str) -> Iterator[Backend]:
    b = open_backend(backend_name)
    yield b
    b.close()


@pytest.fixture
def arena(backend: Backend) -> Iterator[Arena]:
    a = Arena.new(backend, Geometry.oxc(backend.page, backend.granularity))
    yield a
    if a.alive:
        a.free()


def os_agrees(backend: Backend, arena: Arena) -> None:
    model = ArenaModel(arena.geometry, arena.reservation)
    model.start, model.cursor = arena.start, arena.cursor
    assert backend.query(model.reservation, model.reservation_end) == model.expected_view()


def test_geometry_constants() -> None:
    g = Geometry.oxc()
    assert (g.block_size, g.container_size, g.reserved_size) == (2 * GIB - 16, 2 * GIB, 6 * GIB)
    assert (g.footer_offset, g.active_size, g.buffer_size) == (2147483584, 2147483560, 2147483576)
    assert g.first_commit == 16 * KIB


def test_initial_capacity_is_16320(arena: Arena, backend: Backend) -> None:
    assert arena.cursor - arena.start == 16320
    assert arena.committed_bytes == 16 * KIB
    assert arena.container % (4 * GIB) == 0
    os_agrees(backend, arena)


def test_growth_doubles(arena: Arena, backend: Backend) -> None:
    s0 = arena.start
    arena.alloc(8 * KIB)
    assert arena.start == s0, "8 KiB fits in the first commit"
    arena.alloc(12 * KIB)
    assert arena.start == s0 - 16 * KIB, "12 KiB more doubles the commit to 32 KiB"
    os_agrees(backend, arena)
    arena.alloc(20 * KIB)
    assert arena.start == s0 - 16 * KIB - 32 * KIB, "20 KiB more doubles it again, to 64 KiB"
    assert arena.committed_bytes == 64 * KIB
    os_agrees(backend, arena)


@COMMIT_HEAVY
def test_committed_size_stops_at_2_gib(arena: Arena, backend: Backend) -> None:
    previous = arena.committed_bytes
    while arena.try_alloc(64 * 1024 * KIB) is not None:
        assert arena.committed_bytes <= 2 * GIB
        assert arena.committed_bytes >= previous
        previous = arena.committed_bytes
    assert arena.committed_bytes == 2 * GIB
    assert arena.start == arena.container
    os_agrees(backend, arena)


@COMMIT_HEAVY
def test_max_allocation_fits_a_fresh_arena(arena: Arena, backend: Backend) -> None:
    addr = arena.alloc(2147483584)
    assert addr == arena.container
    assert arena.committed_bytes == 2 * GIB
    os_agrees(backend, arena)


def test_one_byte_over_the_max_fails(arena: Arena, backend: Backend) -> None:
    before = (arena.start, arena.cursor)
    with pytest.raises(ArenaFull):
        arena.alloc(2147483585)
    assert arena.try_alloc(2147483585) is None
    assert (arena.start, arena.cursor) == before
    os_agrees(backend, arena)


def test_isize_max_fails(arena: Arena, backend: Backend) -> None:
    before = (arena.start, arena.cursor)
    assert arena.try_alloc(2**63 - 1) is None
    with pytest.raises(ArenaFull):
        arena.alloc(2**63 - 1)
    assert (arena.start, arena.cursor) == before
    os_agrees(backend, arena)


def test_reset_keeps_the_grown_chunk(arena: Arena, backend: Backend) -> None:
    arena.alloc(8 * KIB)
    arena.alloc(12 * KIB)
    grown = arena.start
    arena.reset()
    assert arena.start == grown
    assert arena.cursor == arena.footer
    assert arena.cursor - arena.start == 16320 + 16 * KIB
    os_agrees(backend, arena)
    arena.alloc(20 * KIB)
    assert arena.start == grown, "after reset, 20 KiB fits in the kept 32 KiB"
