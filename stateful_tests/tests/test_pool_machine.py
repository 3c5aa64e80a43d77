"""PoolMachine on every available backend, both pool behaviours; the broken pools caught;
the pool's numbers pinned on the oxc geometry.

The machine tests run under the selected Hypothesis profile, on the small geometry, where
grows reach the container's end within a few steps. Each broken-pool test runs the machine
against one broken pool with a fixed budget and asserts that Hypothesis reports a failure
that names the expected problem. Those tests ask only whether the bug is caught: they search
with short programs and do not shrink, because shrinking a counterexample with blocked
threads costs far more than finding it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from arenacheck.backends.recording import FenceViolation, RecordingBackend
from arenacheck.backends.registry import open_backend
from arenacheck.faults.broken_pools import BROKEN_BEHAVIOURS, BROKEN_POOLS
from arenacheck.faults.injector import FaultInjector, creation_fault
from arenacheck.harness.runner import run_machine
from arenacheck.impl.errors import PoolCreationFailed, ReleaseRefused
from arenacheck.impl.pool import ArenaPool, Behaviour, Release
from arenacheck.machines.oracle import Divergence
from arenacheck.machines.pool import pool_machine_for
from arenacheck.model.arena import OsCall, OsOp
from arenacheck.model.geometry import Geometry
from arenacheck.model.pool import metadata_image, plan_creation
from hypothesis import Phase, settings
from hypothesis.stateful import run_state_machine_as_test


@pytest.mark.parametrize("behaviour", ["posix", "windows"])
def test_pool_machine(backend_name: str, behaviour: str) -> None:
    run_machine(pool_machine_for(backend_name, "small", behaviour), backend_name=backend_name)


# What the first failure must say (the message of the check that caught it).
EXPECTED = {
    "reset-to-footer": r"would overwrite the metadata|reaches the metadata",
    "lost-wakeup": r"lost wake-up",
    "reset-clears-ownership": r"is_double_owned|released although the other owner",
}

BROKEN_CASES = [(name, b) for name in sorted(BROKEN_POOLS) for b in BROKEN_BEHAVIOURS[name]]


@pytest.mark.parametrize(("broken", "behaviour"), BROKEN_CASES)
def test_harness_catches_broken_pool(backend_name: str, broken: str, behaviour: str) -> None:
    machine = pool_machine_for(backend_name, "small", behaviour, factory=BROKEN_POOLS[broken])
    budget = settings(
        settings.default,
        max_examples=1000,
        stateful_step_count=20,
        phases=(Phase.explicit, Phase.generate),
        database=None,
        print_blob=False,
    )
    with pytest.raises((Divergence, FenceViolation)) as caught:
        run_state_machine_as_test(machine, settings=budget)
    assert re.search(EXPECTED[broken], str(caught.value)), str(caught.value)


@pytest.fixture
def recording(backend_name: str) -> Iterator[RecordingBackend]:
    b = RecordingBackend(open_backend(backend_name))
    yield b
    leaked = b.release_leftovers()
    b.inner.close()
    assert not leaked, f"leaked reservations: {leaked}"


# docs/ARENA.md 5 for 3 threads when the k-th creation fails (None: none fails); 0 is the error.
POOL_SIZES: dict[str, dict[int | None, int]] = {
    "posix": {1: 0, 2: 0, 3: 0, 4: 3, 5: 3, None: 3},
    "windows": {1: 0, 2: 1, 3: 1, 4: 2, 5: 3, None: 3},
}


@pytest.mark.parametrize("behaviour", ["posix", "windows"])
def test_pool_sizes_when_creation_fails(recording: RecordingBackend, behaviour: Behaviour) -> None:
    geometry = Geometry.small(recording.page, recording.granularity)
    for fail_at, size in POOL_SIZES[behaviour].items():
        assert plan_creation(behaviour, 3, fail_at).kept == size, f"model, creation {fail_at}"
        injector = FaultInjector(recording)
        injector.arm(None if fail_at is None else creation_fault(recording, fail_at))
        try:
            pool = ArenaPool(injector, geometry, 3, behaviour)
        except PoolCreationFailed:
            assert size == 0, f"creation {fail_at} failing: error, {size} arenas expected"
            assert not recording.live, "a failed creation left reservations behind"
            continue
        finally:
            injector.disarm()
        assert pool.contents() == list(range(size)), f"creation {fail_at} failing"
        assert len(recording.live) == size, "a discarded arena is still reserved"
        pool.close()
        assert not recording.live


def test_metadata_and_ownership_at_oxc_offsets(recording: RecordingBackend) -> None:
    """The metadata at the oxc numbers (ACTIVE_SIZE 2147483560, BUFFER_SIZE 2147483576),
    then both owners letting go, and the third release refused without an OS call."""
    geometry = Geometry.oxc(recording.page, recording.granularity)
    pool = ArenaPool(recording, geometry, 2, "posix")
    arena = pool.get()
    c = arena.arena.container
    assert (arena.id, arena.arena.cursor - c) == (1, 2147483560)
    assert (arena.transfer_address - c, arena.id_address - c) == (2147483560, 2147483576)
    assert arena.flag_address - c == 2147483580
    assert recording.read(c + 2147483560, 24) == metadata_image(1, False, 2147483560)
    addr = arena.alloc(100)
    assert addr - c == 2147483460
    arena.share()
    assert recording.read(c + 2147483560, 24) == metadata_image(1, True, 2147483460)
    pool.add(arena)
    assert arena.arena.cursor - c == 2147483560, "add resets the cursor to C + ACTIVE_SIZE"
    assert arena.is_double_owned, "add keeps the ownership flag"
    assert pool.get() is arena, "the pool is a stack"
    recording.take_log()
    assert pool.retire(arena) is Release.KEPT
    assert recording.take_log() == [], "the first owner to let go makes no OS call"
    assert arena.release_by_engine() is Release.FREED
    release = OsCall(OsOp.RELEASE, arena.arena.reservation, geometry.reserved_size)
    assert [e.call for e in recording.take_log()] == [release]
    with pytest.raises(ReleaseRefused):
        arena.release_by_engine()
    with pytest.raises(ReleaseRefused):
        pool.retire(arena)
    assert recording.take_log() == [], "a third release made an OS call"
    assert pool.close() == [(0, Release.FREED)]
