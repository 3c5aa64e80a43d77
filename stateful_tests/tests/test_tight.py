"""The ``tight`` strategy: the reservation is exactly the container, aligned, nothing leaks."""

from __future__ import annotations

import pytest
from arenacheck.backends.registry import open_backend
from arenacheck.impl.arena import TIGHT, Arena
from arenacheck.model.arena import TIGHT as MODEL_TIGHT
from arenacheck.model.arena import ArenaModel
from arenacheck.model.geometry import Geometry
from arenacheck.model.spans import OsSpan, SpanState


@pytest.mark.parametrize("geometry_name", ["oxc", "small"])
def test_tight_reserves_exactly_the_aligned_container(
    backend_name: str, geometry_name: str
) -> None:
    backend = open_backend(backend_name)
    g = Geometry.oxc(backend.page, backend.granularity)
    if geometry_name == "small":
        g = Geometry.small(backend.page, backend.granularity)
    arena = Arena.new(backend, g, strategy=TIGHT)
    try:
        assert arena.reservation == arena.container
        assert arena.container % g.container_align == 0
        model = ArenaModel(g, arena.reservation, strategy=MODEL_TIGHT)
        lo, hi = arena.reservation, arena.reservation + g.container_size
        assert backend.query(lo, hi) == model.expected_view()
        # Nothing of the over-sized first reservation is left around the container.
        below = backend.query(lo - g.container_align, lo)
        assert not [s for s in below if s.state is SpanState.RESERVED and s.end == lo], below
    finally:
        arena.free()
    assert backend.query(lo, hi) == [OsSpan(lo, hi, SpanState.FREE)]
