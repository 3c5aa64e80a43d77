"""The ``tight`` strategy: the reservation is exactly the container, aligned, nothing leaks."""

from __future__ import annotations

from typing import Any

import pytest
from arenacheck.backends.names import WIN32_EMULATED
from arenacheck.backends.registry import open_backend
from arenacheck.backends.standin import EmulatedKernel32
from arenacheck.impl.arena import TIGHT, Arena
from arenacheck.impl.win_backend import WindowsBackend
from arenacheck.impl.win_kernel32 import MEM_ADDRESS_REQUIREMENTS
from arenacheck.model.arena import TIGHT as MODEL_TIGHT
from arenacheck.model.arena import ArenaModel
from arenacheck.model.geometry import Geometry
from arenacheck.model.spans import OsSpan, SpanState
from arenacheck.model.win_constants import MEM_EXTENDED_PARAMETER_ADDRESS_REQUIREMENTS
from pytest_mock import MockerFixture


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


@pytest.mark.usefixtures("arenacheck_emulated_kernel32")
def test_tight_takes_one_virtualalloc2_on_win32_emulated(mocker: MockerFixture) -> None:
    """The strategy's first choice on Windows: one VirtualAlloc2 with the container's size
    and alignment, no over-sized reservation and no re-reserve (A.6)."""
    backend = open_backend(WIN32_EMULATED)
    assert isinstance(backend, WindowsBackend)
    k32 = backend.k32
    assert isinstance(k32, EmulatedKernel32)
    asked: list[tuple[int | None, int | None, int]] = []
    real_alloc2 = k32.VirtualAlloc2

    def alloc2_reading_requirements(*args: Any) -> int | None:
        # The requirements live only for the call: read them while it lasts.
        param = args[5]._obj  # what ctypes.byref points at
        assert param.Type == MEM_EXTENDED_PARAMETER_ADDRESS_REQUIREMENTS
        r = MEM_ADDRESS_REQUIREMENTS.from_address(param.Pointer)
        asked.append((r.LowestStartingAddress, r.HighestEndingAddress, r.Alignment))
        return real_alloc2(*args)

    alloc2 = mocker.patch.object(k32, "VirtualAlloc2", side_effect=alloc2_reading_requirements)
    alloc = mocker.spy(k32, "VirtualAlloc")
    g = Geometry.oxc(backend.page, backend.granularity)
    arena = Arena.new(backend, g, strategy=TIGHT)
    try:
        assert alloc2.call_count == 1
        _, address, size, kind, protect, _, count = alloc2.call_args.args
        assert (address, size, kind, protect, count) == (None, g.container_size, 0x2000, 1, 1)
        assert asked == [(None, None, g.container_align)]
        assert arena.reservation == arena.container
        assert arena.container % g.container_align == 0
        allocation = k32.model.allocations[arena.container]
        assert allocation.end - allocation.base == g.container_size
        # VirtualAlloc only commits the first chunk at the container's top: no reservation.
        commits = [c.args for c in alloc.call_args_list]
        assert commits == [
            (arena.container + g.container_size - g.first_commit, g.first_commit, 0x1000, 4)
        ]
    finally:
        arena.free()
