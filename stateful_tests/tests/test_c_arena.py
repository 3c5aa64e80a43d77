"""The native arenas behind the C ABI of ``native/c_arena.h``, under the same checks: the
bundled C arena (``native/c_arena.c``) and the Rust arena (``examples/rust_arena``).

ArenaMachine and the oxc numbers run against each on every selected backend: its OS calls
come back through the callback table into the machine's recording backend, so they are
logged, fenced and compared with the model exactly as the Python arena's are. In direct
mode the library makes its own OS calls, on this host's own backend, and the machine
judges them by the OS's view alone. The C ABI's own refusals (double free, use after free,
bad layouts, bad arguments) are checked on the raw functions, without the Python adapter
in between.

Without a C compiler the C flavour skips with the reason, unless ARENACHECK_REQUIRE_CC=1
(then it fails); without rustc the Rust flavour, unless ARENACHECK_REQUIRE_RUST=1.
ARENACHECK_C_ARENA_LIB=/path/to/lib runs the C flavour against another library that
implements native/c_arena.h, and then needs no compiler.
"""

from __future__ import annotations

import errno
import inspect
import os
import shutil
import struct
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from arenacheck.backends.recording import RecordingBackend
from arenacheck.backends.registry import (
    POSIX_NATIVE,
    WIN32_EMULATED,
    WIN32_WINE,
    host_backend,
    open_backend,
    unavailable_reason,
)
from arenacheck.harness.plugins import runs_isolated_by_default
from arenacheck.harness.profiles import arenacheck_settings
from arenacheck.harness.runner import run_machine
from arenacheck.impl import c_build, c_load
from arenacheck.impl.arena import FOOTER_MAGIC, Arena
from arenacheck.impl.backend import Backend
from arenacheck.impl.c_abi import ABI_VERSION, CArenaLibrary, NativeAbiViolation, Status
from arenacheck.impl.c_arena import CArena
from arenacheck.impl.c_bridge import BackendBridge, memory_is_local
from arenacheck.impl.c_build import CompileError
from arenacheck.impl.c_load import load_library
from arenacheck.impl.errors import (
    ArenaFull,
    DoubleFree,
    InvalidArgumentType,
    InvalidLayout,
    OSCallFailed,
    OutOfBounds,
    UseAfterFree,
)
from arenacheck.impl.posix_backend import PosixBackend
from arenacheck.machines.arena import machine_for
from arenacheck.machines.registry import config_of
from arenacheck.model.arena import ArenaModel
from arenacheck.model.arith import ISIZE_MAX
from arenacheck.model.geometry import KIB, Geometry, GeometryError
from arenacheck.model.spans import OsSpan, SpanState
from hypothesis import settings

from stateful_tests.tests import test_oxc_numbers as oxc_numbers
from stateful_tests.tests.native_flavours import FLAVOUR_PARAMS, REQUIRE_CC_ENV, C, Flavour

C_ARENA_IMPL = C.impl
ROOT = Path(__file__).resolve().parents[2]
# Backends whose memory lives in another process: native code cannot touch it. Any other
# backend runs the C arena; one that turns out remote is refused by CArena.new, loudly.
REMOTE_MEMORY_BACKENDS = {WIN32_WINE: "its memory lives in the Wine server process"}


@pytest.fixture(scope="session", params=FLAVOUR_PARAMS)
def flavour(request: pytest.FixtureRequest) -> Flavour:
    flavour: Flavour = request.param
    return flavour


@pytest.fixture(scope="session")
def c_library(flavour: Flavour) -> CArenaLibrary:
    """The library under test, of either flavour: everything here holds for both."""
    return flavour.library_or_skip()


@pytest.fixture(scope="session")
def bundled_c() -> CArenaLibrary:
    """The C flavour alone, for what is about building and naming its library."""
    return C.library_or_skip()


@pytest.fixture
def c_backend_name(backend_name: str, c_library: CArenaLibrary) -> str:
    """A selected backend a native arena can run on (its memory is in this process)."""
    remote = REMOTE_MEMORY_BACKENDS.get(backend_name)
    if remote is not None:
        pytest.skip(f"a native arena touches its memory directly, and on {backend_name} {remote}")
    return backend_name


def fenced(name: str) -> Iterator[RecordingBackend]:
    reason = unavailable_reason(name)
    if reason is not None:
        pytest.skip(reason)
    backend = RecordingBackend(open_backend(name))
    yield backend
    assert not backend.release_leftovers(), "a reservation was leaked"


@pytest.fixture
def posix_backend() -> Iterator[RecordingBackend]:
    """The native POSIX backend behind a fence, for what is POSIX's own (errno, mmap's
    limits); a reservation left at the end is a leak."""
    yield from fenced(POSIX_NATIVE)


@pytest.fixture
def own_backend() -> Iterator[RecordingBackend]:
    """This host's own backend (posix-native, or win32-native on Windows) behind a fence:
    the one whose view shows what a library's own VM calls did."""
    yield from fenced(host_backend())


def calls(backend: RecordingBackend) -> list[str]:
    return [str(entry.call) for entry in backend.take_log()]


def oxc_geometry(backend: Backend) -> Geometry:
    return Geometry.oxc(backend.page, backend.granularity)


def small_geometry(backend: Backend) -> Geometry:
    return Geometry.small(backend.page, backend.granularity)


# ------------------------------------------------------------------------ machines


def budget(fraction: int) -> settings:
    """The selected profile with 1/``fraction`` of its examples (at least one), the rest of
    it (steps, database, phases) unchanged: a deeper profile still runs deeper."""
    profile = arenacheck_settings()
    return settings(profile, max_examples=max(1, profile.max_examples // fraction))


@pytest.mark.parametrize("geometry_name", ["oxc", "small"])
def test_c_arena_machine(c_backend_name: str, flavour: Flavour, geometry_name: str) -> None:
    """In a child process, as native code runs unless the caller says otherwise. A quarter
    of the profile's examples: every step crosses a pipe, each flavour and mode runs its
    own machines, and the in-process run below covers what a child's kernel hides."""
    impl = flavour.impl
    assert runs_isolated_by_default(impl), "a native arena declares it touches memory"
    machine = machine_for(c_backend_name, geometry_name, impl=impl)
    # Named by its implementation (the class name keys the example database), and recorded
    # in regression files, so that a replay runs the same arena again, isolated again.
    assert impl.rsplit(":", 1)[1] in machine.__name__ and machine.isolated
    assert not machine.direct
    assert config_of(machine)["impl"] == impl and config_of(machine)["isolated"]
    run_machine(machine, backend_name=c_backend_name, run_settings=budget(4))


@pytest.mark.parametrize("geometry_name", ["oxc", "small"])
def test_c_arena_machine_direct(
    flavour: Flavour, c_library: CArenaLibrary, geometry_name: str
) -> None:
    """The library's own VM calls (mmap, or VirtualAlloc on Windows) on this host's own
    backend: the machine sees none of them, only what they did, in the OS's view after
    every step. A quarter of the examples, as in the machine above."""
    backend = host_backend()
    reason = unavailable_reason(backend)
    if reason is not None:
        pytest.skip(reason)
    machine = machine_for(backend, geometry_name, impl=flavour.direct_impl)
    assert machine.direct and machine.isolated
    run_machine(machine, backend_name=backend, run_settings=budget(4))


def test_a_direct_arena_runs_only_on_the_hosts_own_backend() -> None:
    """Elsewhere the OS's view would not show what its calls did."""
    other = WIN32_EMULATED
    with pytest.raises(ValueError, match="makes its own OS calls"):
        machine_for(other, "small", impl=C.direct_impl)
    with pytest.raises(ValueError, match="makes its own OS calls"):
        machine_for(host_backend(), "small", impl=C.direct_impl, faults=True)


@pytest.mark.parametrize("backend_id", [WIN32_EMULATED], indirect=True)
@pytest.mark.parametrize("geometry_name", ["oxc", "small"])
def test_c_arena_machine_in_process(
    backend_id: str,
    arenacheck_emulated_kernel32: object,
    flavour: Flavour,
    c_library: CArenaLibrary,
    geometry_name: str,
) -> None:
    """Asked for in this process, on the emulated kernel: there the machine also checks the
    commit charge and the host's memory against the emulation after every step, which a
    child's kernel keeps to itself. Checked every step, so a quarter of the examples."""
    backend = backend_id
    machine = machine_for(backend, geometry_name, impl=flavour.impl, isolated=False)
    assert not machine.isolated
    run_machine(machine, backend_name=backend, run_settings=budget(4))


# ---------------------------------------------------------------- the oxc numbers


def oxc_scenarios() -> list[Any]:
    """Every scenario of test_oxc_numbers (a test taking ``arena`` and ``backend``), with
    its marks (the commit-heavy xdist group among them)."""
    found = []
    for name, fn in sorted(vars(oxc_numbers).items()):
        if (
            name.startswith("test_")
            and callable(fn)
            and list(inspect.signature(fn).parameters) == ["arena", "backend"]
        ):
            marks = getattr(fn, "pytestmark", [])
            found.append(pytest.param(fn, id=name.removeprefix("test_"), marks=marks))
    return found


OXC_SCENARIOS = oxc_scenarios()


def test_every_oxc_scenario_is_reused() -> None:
    """A scenario test_oxc_numbers gains with another signature must not be left out here."""
    takes_arena = {
        name
        for name, fn in vars(oxc_numbers).items()
        if name.startswith("test_") and callable(fn) and "arena" in inspect.signature(fn).parameters
    }
    reused = {p.id for p in OXC_SCENARIOS}
    assert reused == {name.removeprefix("test_") for name in takes_arena}
    assert len(reused) >= 7


def run_scenario(
    scenario: Callable[[Any, Backend], None], backend: RecordingBackend, arena: CArena
) -> None:
    try:
        scenario(arena, backend)
    finally:
        if arena.alive:
            arena.free()
    assert not backend.release_leftovers(), "the C arena leaked a reservation"


@pytest.mark.parametrize("scenario", OXC_SCENARIOS)
def test_oxc_numbers(
    c_backend_name: str, c_library: CArenaLibrary, scenario: Callable[[Any, Backend], None]
) -> None:
    """Through the callbacks: the recording backend fences every call the C arena makes."""
    backend = RecordingBackend(open_backend(c_backend_name))
    try:
        arena = CArena.new(backend, oxc_geometry(backend), library=c_library)
        run_scenario(scenario, backend, arena)
    finally:
        backend.inner.close()


@pytest.mark.parametrize("scenario", OXC_SCENARIOS)
def test_oxc_numbers_direct(
    own_backend: RecordingBackend,
    c_library: CArenaLibrary,
    scenario: Callable[[Any, Backend], None],
) -> None:
    """The library's own mmap/mprotect/munmap (VirtualAlloc/VirtualFree on Windows); the
    backend only reads the OS's view."""
    arena = CArena.new(own_backend, oxc_geometry(own_backend), direct=True, library=c_library)
    reservation = arena.reservation
    run_scenario(scenario, own_backend, arena)
    assert calls(own_backend) == [], "the direct path must not go through the backend"
    end = reservation + arena.geometry.reserved_size
    assert own_backend.query(reservation, end) == [OsSpan(reservation, end, SpanState.FREE)]


# --------------------------------------------------------------- the C ABI itself


def create_raw(
    lib: CArenaLibrary, backend: RecordingBackend, geometry: Geometry, min_align: int = 1
) -> tuple[int, BackendBridge]:
    # The caller keeps the bridge as long as the handle: it owns the callbacks.
    bridge = BackendBridge(backend)
    status, handle, os_error = lib.create(geometry, min_align, 0, bridge.table)
    assert (status, os_error, bridge.take()) == (Status.OK, 0, [])
    assert handle != 0
    return handle, bridge


def state(lib: CArenaLibrary, handle: int) -> tuple[tuple[int, int], tuple[int, int]]:
    return lib.get("start", handle), lib.get("cursor", handle)


def test_double_free_is_refused_without_an_os_call(
    c_library: CArenaLibrary, own_backend: RecordingBackend
) -> None:
    lib = c_library
    handle, _callbacks = create_raw(lib, own_backend, small_geometry(own_backend))
    r = lib.get("reservation", handle)[1]
    calls(own_backend)
    assert lib.free(handle) == Status.OK
    assert calls(own_backend) == [
        f"release({r:#x}, {small_geometry(own_backend).reserved_size:#x})"
    ]
    for _ in range(2):
        assert lib.free(handle) == Status.DOUBLE_FREE
    assert calls(own_backend) == []
    assert lib.destroy(handle) == Status.OK
    assert calls(own_backend) == [], "destroying a tombstone must not release again"


def test_use_after_free_is_refused_without_an_os_call(
    c_library: CArenaLibrary, own_backend: RecordingBackend
) -> None:
    lib = c_library
    geometry = small_geometry(own_backend)
    handle, _callbacks = create_raw(lib, own_backend, geometry)
    identity = {name: lib.get(name, handle) for name in ("reservation", "container", "footer")}
    assert lib.alloc(handle, 100, 8)[0] == Status.OK
    assert lib.free(handle) == Status.OK
    calls(own_backend)
    assert lib.alloc(handle, 8, 8) == (Status.USE_AFTER_FREE, 0)
    assert lib.alloc(handle, 8, 3) == (Status.USE_AFTER_FREE, 0), "checked before the layout"
    assert lib.alloc(handle, geometry.container_size, 1) == (Status.USE_AFTER_FREE, 0)
    assert lib.reset(handle) == Status.USE_AFTER_FREE
    for name in ("start", "cursor", "committed_bytes"):
        assert lib.get(name, handle) == (Status.USE_AFTER_FREE, 0), name
    # Where the arena was stays readable: it names no memory the arena still owns.
    assert {name: lib.get(name, handle) for name in identity} == identity
    assert lib.alive(handle) == (Status.OK, False)
    assert calls(own_backend) == []
    assert lib.destroy(handle) == Status.OK


BAD_RAW_LAYOUTS = (
    (8, 0),
    (8, 3),
    (8, 6),
    (8, (1 << 63) + 1),
    (1 << 63, 1),
    ((1 << 64) - 1, 1),
    (ISIZE_MAX, 2),
    (1, 1 << 63),
    (ISIZE_MAX - 14, 16),
)
# The largest layouts Rust still accepts: they must reach the algorithm (and be full).
EDGE_RAW_LAYOUTS = ((ISIZE_MAX, 1), (ISIZE_MAX - 15, 16), (0, 1 << 63), (ISIZE_MAX - 4095, 4096))


def test_bad_layout_is_refused_without_a_change(
    c_library: CArenaLibrary, own_backend: RecordingBackend
) -> None:
    lib = c_library
    handle, _callbacks = create_raw(lib, own_backend, oxc_geometry(own_backend))
    assert lib.alloc(handle, 64, 16)[0] == Status.OK
    before = state(lib, handle)
    calls(own_backend)
    for size, align in BAD_RAW_LAYOUTS:
        assert lib.alloc(handle, size, align) == (Status.INVALID_LAYOUT, 0), (size, align)
        assert state(lib, handle) == before
    for size, align in EDGE_RAW_LAYOUTS:
        # Valid, so not refused as a layout; each wraps or rounds far below C: full.
        assert lib.alloc(handle, size, align) == (Status.FULL, 0), (size, align)
        assert state(lib, handle) == before
    assert calls(own_backend) == []
    assert lib.free(handle) == Status.OK
    assert lib.destroy(handle) == Status.OK


def test_bad_arguments_are_refused(c_library: CArenaLibrary, own_backend: RecordingBackend) -> None:
    lib = c_library
    assert lib.alloc(0, 8, 8) == (Status.INVALID_ARGUMENT, 0)
    assert lib.reset(0) == Status.INVALID_ARGUMENT
    assert lib.free(0) == Status.INVALID_ARGUMENT
    assert lib.destroy(0) == Status.OK, "like free(NULL)"
    assert lib.get("cursor", 0) == (Status.INVALID_ARGUMENT, 0)
    assert lib.alive(0) == (Status.INVALID_ARGUMENT, False)
    g = small_geometry(own_backend)
    bridge = BackendBridge(own_backend)
    assert lib.create(g, 3, 0, bridge.table)[:2] == (Status.INVALID_LAYOUT, 0)
    assert lib.create(g, 32, 0, bridge.table)[:2] == (Status.INVALID_LAYOUT, 0)
    assert lib.create(g, 1, 2, bridge.table)[:2] == (Status.INVALID_ARGUMENT, 0), "unknown flag"
    # Consistent for the Python geometry, but a 16-byte footer would not fit in 8 bytes.
    tiny_footer = Geometry(
        "tiny-footer",
        g.page,
        g.granularity,
        g.container_align,
        g.block_size,
        g.first_commit,
        footer_size=8,
    )
    assert lib.create(tiny_footer, 1, 0, bridge.table)[:2] == (Status.INVALID_ARGUMENT, 0)
    # RESERVED_SIZE = CONTAINER_SIZE + 2**63 is no Rust allocation size; the bound on it
    # must not wrap for the one power of two above isize::MAX.
    too_big = Geometry("too-big", g.page, g.granularity, 1 << 63, g.block_size, g.first_commit)
    assert lib.create(too_big, 1, 0, bridge.table)[:2] == (Status.INVALID_ARGUMENT, 0)
    with pytest.raises(GeometryError):
        CArena.new(own_backend, tiny_footer, library=lib)
    assert calls(own_backend) == [], "a refused creation makes no OS call"


def test_footer_has_the_python_arenas_content(
    c_library: CArenaLibrary, own_backend: RecordingBackend
) -> None:
    geometry = small_geometry(own_backend)
    native = CArena.new(own_backend, geometry, library=c_library)
    python = Arena.new(own_backend, geometry)
    try:
        for arena in (native, python):
            written = own_backend.read(arena.footer, 16)
            assert written == struct.pack("<QQ", FOOTER_MAGIC, arena.reservation)
            assert written == arena.footer_bytes()
    finally:
        native.free()
        python.free()


# ------------------------------------------------------ the adapter: Arena's interface


def test_pool_arena_allocates_below_its_metadata(
    c_library: CArenaLibrary, own_backend: RecordingBackend
) -> None:
    geometry = small_geometry(own_backend)
    arena = CArena.new(own_backend, geometry, pool=True, library=c_library)
    try:
        top = arena.container + geometry.active_size
        assert arena.cursor == top
        addr = arena.alloc(64, 8)
        assert addr == top - 64
        arena.write(addr, b"\x5a" * 64)
        assert arena.read(addr, 64) == b"\x5a" * 64
        with pytest.raises(OutOfBounds):
            arena.read(top - 8, 16)  # across the transfer metadata
        with pytest.raises(OutOfBounds):
            arena.write(top, b"x")
        arena.reset()
        assert arena.cursor == top
    finally:
        arena.free()


def test_adapter_refuses_what_cannot_be_a_usize(
    c_library: CArenaLibrary, own_backend: RecordingBackend
) -> None:
    arena = CArena.new(own_backend, small_geometry(own_backend), library=c_library)
    calls(own_backend)
    before = (arena.start, arena.cursor)
    refusals: list[tuple[object, object, type[Exception]]] = [
        (-1, 1, InvalidLayout),
        (1 << 64, 1, InvalidLayout),
        (8, -8, InvalidLayout),
        (8, 1 << 64, InvalidLayout),
        (True, 1, InvalidArgumentType),
        (8, False, InvalidArgumentType),
        (8.0, 1, InvalidArgumentType),
    ]
    for size, align, error in refusals:
        with pytest.raises(error):
            arena.alloc(size, align)
        with pytest.raises(error):
            arena.try_alloc(size, align)
    with pytest.raises(InvalidLayout):
        CArena.new(own_backend, small_geometry(own_backend), min_align=True, library=c_library)
    assert (arena.start, arena.cursor) == before
    assert calls(own_backend) == []
    arena.free()
    with pytest.raises(UseAfterFree):
        arena.alloc("8", 1)  # a freed arena refuses even bad arguments as a use after free
    with pytest.raises(UseAfterFree):
        arena.read("x", 1)
    with pytest.raises(DoubleFree):
        arena.free()


# ---------------------------------------- exceptions raised in a callback are not lost


class Boom(BaseException):
    """Not an Exception: the bridge must keep even those (KeyboardInterrupt is one)."""


class FaultyBackend(RecordingBackend):
    """A recording backend whose next commit or release raises what a test chooses."""

    def __init__(self, inner: Backend) -> None:
        super().__init__(inner)
        self.commit_raises: BaseException | None = None
        self.release_raises: BaseException | None = None

    def commit(self, addr: int, size: int) -> None:
        error, self.commit_raises = self.commit_raises, None
        if error is not None:
            raise error
        super().commit(addr, size)

    def release(self, addr: int, size: int) -> None:
        error, self.release_raises = self.release_raises, None
        if error is not None:
            raise error
        super().release(addr, size)


@pytest.fixture
def faulty(own_backend: RecordingBackend) -> Iterator[FaultyBackend]:
    backend = FaultyBackend(own_backend.inner)
    yield backend
    assert not backend.release_leftovers(), "a reservation was leaked"


def test_a_failed_first_commit_raises_its_error_and_releases(
    c_library: CArenaLibrary, faulty: FaultyBackend
) -> None:
    for error in (OSCallFailed("mprotect", errno.ENOMEM), Boom("fenced")):
        faulty.commit_raises = error
        with pytest.raises(type(error)) as caught:
            CArena.new(faulty, small_geometry(faulty), library=c_library)
        assert caught.value is error
        made = calls(faulty)
        assert made[0].startswith("reserve(") and made[1].startswith("release("), made
        assert faulty.live == {}


def test_a_failed_release_after_a_failed_commit_is_chained(
    c_library: CArenaLibrary, faulty: FaultyBackend
) -> None:
    commit_error = OSCallFailed("mprotect", errno.ENOMEM)
    release_error = OSCallFailed("munmap", errno.EINVAL)
    faulty.commit_raises, faulty.release_raises = commit_error, release_error
    with pytest.raises(OSCallFailed) as caught:
        CArena.new(faulty, small_geometry(faulty), library=c_library)
    # As impl.arena.Arena would raise it: the release's error, during the commit's.
    assert caught.value is release_error
    assert caught.value.__context__ is commit_error
    leaked = faulty.release_leftovers()
    assert len(leaked) == 1, "the reservation that could not be released is still there"


def test_a_refused_grow_is_full_and_a_raising_grow_propagates(
    c_library: CArenaLibrary, faulty: FaultyBackend
) -> None:
    arena = CArena.new(faulty, small_geometry(faulty), library=c_library)
    before = (arena.start, arena.cursor)
    grow = arena.cursor - arena.start + 1
    calls(faulty)
    # Codes a C int cannot hold, or 0, must still reach the arena as a failure.
    for code in (0, 1 << 32, errno.ENOMEM):
        faulty.commit_raises = OSCallFailed("mprotect", code)
        assert arena.try_alloc(grow) is None, code
    assert arena.last_os_error == errno.ENOMEM
    refused = OSCallFailed("mprotect", errno.ENOMEM)
    faulty.commit_raises = refused
    with pytest.raises(ArenaFull) as full:
        arena.alloc(grow)
    assert full.value.__cause__ is refused
    boom = Boom("fence")
    faulty.commit_raises = boom
    with pytest.raises(Boom) as caught:
        arena.try_alloc(grow)
    assert caught.value is boom
    assert (arena.start, arena.cursor) == before
    assert calls(faulty) == [], "the refused commits never reached the recording"
    assert arena.alloc(grow) < before[0], "the same grow succeeds once the OS agrees"
    arena.free()


def test_a_failed_release_keeps_the_arena_alive(
    c_library: CArenaLibrary, faulty: FaultyBackend
) -> None:
    arena = CArena.new(faulty, small_geometry(faulty), library=c_library)
    refused = OSCallFailed("munmap", errno.EINVAL)
    faulty.release_raises = refused
    with pytest.raises(OSCallFailed) as caught:
        arena.free()
    assert caught.value is refused
    assert arena.alive and arena.last_os_error == errno.EINVAL
    arena.alloc(8)
    arena.free()
    assert not arena.alive


# ----------------------------------------------------------------- building, loading


def test_library_is_built_outside_the_source_tree(bundled_c: CArenaLibrary) -> None:
    if os.environ.get(c_load.LIBRARY_ENV):
        pytest.skip(f"{c_load.LIBRARY_ENV} names the library under test; nothing is built")
    path = c_build.build_library()
    assert path == bundled_c.path
    assert not path.resolve().is_relative_to(ROOT)
    assert bundled_c.abi_version == ABI_VERSION


def test_build_is_cached_and_safe_in_parallel(
    bundled_c: CArenaLibrary, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(c_build.BUILD_DIR_ENV, str(tmp_path / "build"))
    built: list[Path] = []
    threads = [threading.Thread(target=lambda: built.append(c_build.build_library())) for _ in "ab"]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(built) == 2 and built[0] == built[1]
    assert sorted(p.name for p in (tmp_path / "build").iterdir()) == [built[0].name]
    mtime = built[0].stat().st_mtime_ns
    assert c_build.build_library() == built[0]
    assert built[0].stat().st_mtime_ns == mtime, "an up-to-date library is not rebuilt"
    assert (tmp_path / "build").stat().st_mode & 0o077 == 0


def test_a_shared_build_directory_is_refused(
    bundled_c: CArenaLibrary, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    monkeypatch.setenv(c_build.BUILD_DIR_ENV, str(shared))
    with pytest.raises(CompileError, match="not private"):
        c_build.build_library()


def test_a_compiler_that_fails_is_an_error_not_a_skip(
    bundled_c: CArenaLibrary, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    false = shutil.which("false")
    if false is None:
        pytest.skip("no `false` executable to stand in for a broken compiler")
    monkeypatch.setenv("CC", false)
    monkeypatch.setenv(c_build.BUILD_DIR_ENV, str(tmp_path / "build"))
    assert c_build.compiler_unavailable_reason() is None
    with pytest.raises(CompileError, match="failed with status 1"):
        c_build.build_library()
    assert list((tmp_path / "build").iterdir()) == [], "no partial library is left behind"


@pytest.mark.skipif(
    sys.platform == "win32",
    reason="POSIX only: takes away the C compiler, but on Windows the platform itself is "
    "the C arena's reason (its driver is POSIX cc and it calls mmap)",
)
def test_missing_compiler_skips_with_its_reason_or_fails_when_required(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(c_load.LIBRARY_ENV, raising=False)
    monkeypatch.setenv("CC", "/nonexistent/cc -m64")
    reason = c_load.unavailable_reason()
    assert reason is not None and "/nonexistent/cc" in reason
    monkeypatch.delenv("CC")
    monkeypatch.setenv("PATH", "")
    reason = c_build.compiler_unavailable_reason()
    assert reason is not None and "no C compiler" in reason
    monkeypatch.setenv(REQUIRE_CC_ENV, "0")
    with pytest.raises(pytest.skip.Exception, match="no C compiler"):
        C.library_or_skip()
    monkeypatch.setenv(REQUIRE_CC_ENV, "1")
    with pytest.raises(pytest.fail.Exception, match=f"{REQUIRE_CC_ENV} is set"):
        C.library_or_skip()


def compile_stub(tmp_path: Path, name: str, source: str) -> Path:
    cc = c_build.compiler_command()
    assert cc is not None
    src = tmp_path / f"{name}.c"
    src.write_text(source)
    out = tmp_path / f"{name}.so"
    subprocess.run([*cc, "-shared", "-fPIC", "-o", str(out), str(src)], check=True)
    return out


def test_a_library_outside_the_abi_is_refused(bundled_c: CArenaLibrary, tmp_path: Path) -> None:
    incomplete = compile_stub(
        tmp_path, "incomplete", "unsigned c_arena_abi_version(void) { return 1; }\n"
    )
    with pytest.raises(NativeAbiViolation, match="does not export c_arena_create"):
        load_library(incomplete)
    newer = compile_stub(tmp_path, "newer", "unsigned c_arena_abi_version(void) { return 2; }\n")
    with pytest.raises(NativeAbiViolation, match="implements C ABI version 2"):
        load_library(newer)


def test_another_library_with_the_abi_is_loaded_by_path(
    bundled_c: CArenaLibrary,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    own_backend: RecordingBackend,
) -> None:
    copy = tmp_path / "libmine.so"
    shutil.copyfile(bundled_c.path, copy)
    monkeypatch.setenv(c_load.LIBRARY_ENV, str(copy))
    monkeypatch.setenv("CC", "/nonexistent/cc")
    assert c_load.unavailable_reason() is None, "a named library needs no compiler"
    lib = load_library()
    assert lib.path == copy.resolve() and lib is not bundled_c
    arena = CArena.new(own_backend, small_geometry(own_backend), library=lib)
    model = ArenaModel(arena.geometry, arena.reservation)
    assert (arena.start, arena.cursor) == (model.start, model.cursor)
    arena.alloc(3 * KIB)
    arena.free()


class RemoteMemoryBackend(PosixBackend):
    """Reads and writes some other way than in this process, like a backend over a pipe."""

    def read(self, addr: int, n: int) -> bytes:
        raise AssertionError("a remote read was not expected")

    def write(self, addr: int, data: bytes) -> None:
        raise AssertionError("a remote write was not expected")


def test_a_backend_with_remote_memory_is_refused(
    c_library: CArenaLibrary, posix_backend: RecordingBackend
) -> None:
    assert memory_is_local(posix_backend)
    remote = RecordingBackend(RemoteMemoryBackend())
    assert not memory_is_local(remote)
    with pytest.raises(InvalidArgumentType, match="outside this process"):
        CArena.new(remote, small_geometry(remote), library=c_library)
    assert calls(remote) == [], "refused before any OS call"
    # The library's own mmap needs nothing from the backend's memory.
    arena = CArena.new(remote, small_geometry(remote), direct=True, library=c_library)
    arena.free()


@pytest.mark.parametrize("first", [32 * KIB, 100 * KIB])
def test_grow_after_an_uneven_commit_is_capped_at_the_container(
    c_library: CArenaLibrary, own_backend: RecordingBackend, first: int
) -> None:
    """A first grow beyond doubling leaves a commit that is no power of two; doubling it
    again must stop at C, never reach below it. Each step against the model, call for call."""
    geometry = small_geometry(own_backend)
    arena = CArena.new(own_backend, geometry, library=c_library)
    model = ArenaModel(geometry, arena.reservation)
    calls(own_backend)
    try:
        size = first
        while True:
            plan = model.plan_alloc(size, 1)
            addr = arena.try_alloc(size)
            made = calls(own_backend)
            assert made == ([] if plan.commit is None else [str(plan.commit)])
            assert addr == model.apply_alloc(plan, size)
            assert (arena.start, arena.cursor) == (model.start, model.cursor)
            if addr is None:
                break
            size = model.capacity + 1  # always one byte more than fits: a grow every time
        assert model.start == model.container, "the commit grew to the whole container"
        assert arena.committed_bytes == geometry.container_size
    finally:
        arena.free()


def test_destroy_releases_a_live_arena_first(
    c_library: CArenaLibrary, faulty: FaultyBackend
) -> None:
    lib = c_library
    handle, bridge = create_raw(lib, faulty, small_geometry(faulty))
    r = lib.get("reservation", handle)[1]
    calls(faulty)
    refused = OSCallFailed("munmap", errno.EINVAL)
    faulty.release_raises = refused
    assert lib.destroy(handle) == Status.RELEASE_FAILED
    assert bridge.take() == [refused], "the callback kept what the backend raised"
    assert lib.alive(handle) == (Status.OK, True), "kept, so that it can still be released"
    assert lib.last_os_error(handle) == (Status.OK, errno.EINVAL)
    assert lib.destroy(handle) == Status.OK
    assert calls(faulty) == [f"release({r:#x}, {small_geometry(faulty).reserved_size:#x})"]


def test_a_reservation_the_os_refuses_fails_creation(
    c_library: CArenaLibrary, posix_backend: RecordingBackend
) -> None:
    """2**47 bytes and more: beyond the user address space that mmap hands out by default."""
    g = small_geometry(posix_backend)
    huge = Geometry("huge", g.page, g.granularity, 1 << 47, g.block_size, g.first_commit)
    with pytest.raises(OSCallFailed) as through_backend:
        CArena.new(posix_backend, huge, library=c_library)
    assert through_backend.value.call == "mmap"
    with pytest.raises(OSCallFailed) as direct:
        CArena.new(posix_backend, huge, direct=True, library=c_library)
    assert (direct.value.call, direct.value.code) == ("mmap", through_backend.value.code)
    assert direct.value.code == errno.ENOMEM
    assert calls(posix_backend) == [f"reserve(anywhere, {huge.reserved_size:#x})"]
