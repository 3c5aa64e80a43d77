"""Native code runs isolated by default, and a native crash is an ordinary failure.

``CArena`` declares that it touches its memory itself, so the harness runs it in a child
process unless told otherwise. ``CArenaWritesBelowStart`` is the bundled C arena built with
a seeded store just below S (uncommitted memory): under the default, ArenaMachine finds it,
shrinks it to ``new_arena`` then one ``alloc``, writes the regression files, and the run
goes on; replaying the file crashes a child again, never this process.

The seeded variant is built from the bundled source, so it needs a C compiler even where
ARENACHECK_C_ARENA_LIB names the library under test; without one these tests skip with the
reason, unless ARENACHECK_REQUIRE_CC=1 (then they fail).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from arenacheck.backends.isolation import ChildCrashed
from arenacheck.backends.recording import RecordingBackend
from arenacheck.faults.broken_c_arenas import CArenaWritesBelowStart
from arenacheck.harness.plugins import runs_isolated_by_default
from arenacheck.harness.runner import run_machine
from arenacheck.impl import c_build
from arenacheck.impl.arena import Arena
from arenacheck.impl.c_abi import ABI_VERSION
from arenacheck.impl.c_arena import CArena
from arenacheck.impl.c_build import WRITE_BELOW_START, CompileError
from arenacheck.impl.c_load import load_bundled_variant, load_library
from arenacheck.impl.posix_backend import PosixBackend
from arenacheck.machines.arena import machine_for
from arenacheck.machines.registry import config_of
from arenacheck.model.geometry import Geometry
from arenacheck.record.replay import load_program, replay_program
from hypothesis import settings

from stateful_tests.tests.native_flavours import REQUIRE_CC_ENV, required
from stateful_tests.tests.test_c_arena import C_ARENA_IMPL

BROKEN_C = "arenacheck.faults.broken_c_arenas:CArenaWritesBelowStart"
HERE = "stateful_tests.tests.test_c_arena_isolation"
# By name: Windows has no SIGBUS, and this module is collected there too.
CRASH_SIGNALS = ("SIGSEGV", "SIGBUS")


@pytest.fixture(scope="module")
def compiler() -> None:
    """A compiler for the seeded variant; skipped with the reason where there is none,
    failed where ARENACHECK_REQUIRE_CC asks for one."""
    reason = c_build.compiler_unavailable_reason()
    if reason is not None:
        if required(REQUIRE_CC_ENV):
            pytest.fail(f"{REQUIRE_CC_ENV} is set, but the C arena cannot be built: {reason}")
        pytest.skip(reason)


# ------------------------------------------------------ who runs isolated by default


def c_arena_factory(backend: object, geometry: object, min_align: int) -> CArena:
    raise AssertionError("the default is read from the declaration, the factory never runs")


class DeclinesIsolation(CArena):
    """Native, but says its memory is touched only through its backend."""

    touches_memory_itself = False


def test_native_implementations_declare_that_they_run_isolated() -> None:
    assert runs_isolated_by_default(C_ARENA_IMPL)
    assert runs_isolated_by_default(BROKEN_C), "a subclass inherits the declaration"
    assert runs_isolated_by_default(f"{HERE}:c_arena_factory"), "read from the return type"
    assert not runs_isolated_by_default("arenacheck.impl.arena:Arena")
    assert not runs_isolated_by_default("arenacheck.faults.broken_arenas:WritesBelowStart")
    assert not runs_isolated_by_default(f"{HERE}:DeclinesIsolation")
    assert CArena.touches_memory_itself and not hasattr(Arena, "touches_memory_itself")


# ---------------------------------------------------------- the seeded native fault


def test_the_seeded_variant_never_shares_the_correct_library(compiler: None) -> None:
    correct = c_build.build_library()
    seeded = c_build.build_library((WRITE_BELOW_START,))
    assert seeded != correct and seeded.parent == correct.parent
    assert c_build.build_library((WRITE_BELOW_START, WRITE_BELOW_START)) == seeded
    lib = load_bundled_variant((WRITE_BELOW_START,))
    assert lib.path == seeded.resolve() and lib.abi_version == ABI_VERSION
    assert load_bundled_variant(()).path == correct.resolve()
    assert load_library().path != seeded.resolve()
    with pytest.raises(ValueError, match="not a variant"):
        load_bundled_variant(("NDEBUG",))
    with pytest.raises(CompileError, match="not a preprocessor name"):
        c_build.build_library(("X -o /tmp/elsewhere",))
    # Created (never allocated from, so never storing) in this process: on that library.
    backend = RecordingBackend(PosixBackend())
    arena = CArenaWritesBelowStart.new(backend, Geometry.small(backend.page, backend.granularity))
    try:
        assert type(arena) is CArenaWritesBelowStart and arena._lib is lib
    finally:
        arena.free()
    assert not backend.release_leftovers()


@pytest.mark.parametrize("backend_id", ["posix-native", "win32-emulated"], indirect=True)
def test_a_native_crash_is_a_minimised_failure_and_the_run_goes_on(
    backend_id: str, compiler: None, tmp_path: Path
) -> None:
    backend = backend_id
    # The implementation's own default: nothing here asks for a child process.
    machine = machine_for(backend, "small", impl=BROKEN_C)
    assert machine.isolated
    budget = settings(settings.default, database=None, print_blob=False, max_examples=200)
    with pytest.raises(ChildCrashed) as caught:
        run_machine(machine, backend_name=backend, run_settings=budget, write_failures_to=tmp_path)
    assert caught.value.signal_name in CRASH_SIGNALS, caught.value
    assert f"died with signal {caught.value.signal_name}" in str(caught.value)
    (trace,) = tmp_path.glob("*.json")
    (regression,) = tmp_path.glob("*.py")
    program = json.loads(trace.read_text())
    steps = [s["rule"] for s in program["steps"]]
    # Minimal is new_arena then alloc; shrinking across crashes may leave a few steps that
    # do not matter (resets), never another allocation.
    assert steps[0] == "new_arena" and steps[-1] == "alloc" and steps.count("alloc") == 1, steps
    assert len(steps) <= 8, steps
    assert program["machine"] == config_of(machine)
    assert program["machine"]["impl"] == BROKEN_C and program["machine"]["isolated"] is True

    # The regression file rebuilds the isolated machine: the replay crashes a child again.
    with pytest.raises(ChildCrashed) as replayed:
        replay_program(load_program(regression), backend)
    assert replayed.value.signal_name in CRASH_SIGNALS, replayed.value

    # This process is whole: the correct C arena runs after it, in a fresh child.
    correct = machine_for(backend, "small", impl=C_ARENA_IMPL, isolated=True)
    run_machine(correct, backend_name=backend, run_settings=settings(budget, max_examples=10))
