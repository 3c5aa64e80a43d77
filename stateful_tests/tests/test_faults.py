"""Fault injection: every OS call site of the arena, with every error the OS can give there.

The OS callables themselves (libc's mmap/mprotect/munmap; kernel32's VirtualAlloc and
VirtualFree) are wrapped with pytest-mock so that one chosen call fails with a chosen code,
exactly as the OS reports it (-1 and errno; NULL or FALSE and the last error). Each test
asserts one of the four guarantees: a failed creation leaves nothing reserved, a failed grow
changes nothing and the arena stays usable, a failed release surfaces as a typed error with
the arena whole, and a dead arena makes no OS call. ``FaultMachine`` then explores the same
faults at arbitrary points of arbitrary programs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from arenacheck.backends.registry import open_backend
from arenacheck.harness.runner import run_machine
from arenacheck.impl.arena import Arena
from arenacheck.impl.backend import Backend
from arenacheck.impl.errors import ArenaFull, DoubleFree, OSCallFailed, UseAfterFree
from arenacheck.impl.posix_backend import PosixBackend
from arenacheck.impl.posix_libc import MAP_FAILED, CallResult
from arenacheck.impl.win_backend import WindowsBackend
from arenacheck.machines.arena import POSIX_FAULTS, WINDOWS_FAULTS, machine_for
from arenacheck.model.arena import ArenaModel
from arenacheck.model.geometry import Geometry
from arenacheck.model.spans import OsSpan, SpanState
from arenacheck.model.win_constants import MEM_COMMIT, MEM_RELEASE, MEM_RESERVE
from pytest_mock import MockerFixture

# Each site: the callable to wrap, and which of its calls is the arena's call at that site.
POSIX_SITES = {
    "reserve": ("mmap", lambda args: True),
    "first-commit": ("mprotect", lambda args: True),
    "release": ("munmap", lambda args: True),
}
WINDOWS_SITES = {
    "reserve": ("VirtualAlloc", lambda args: args[2] & MEM_RESERVE),
    "first-commit": ("VirtualAlloc", lambda args: args[2] == MEM_COMMIT),
    "release": ("VirtualFree", lambda args: args[2] == MEM_RELEASE),
}
CASES = [("posix-native", site, code) for site in POSIX_SITES for code in POSIX_FAULTS] + [
    ("win32-emulated", site, code) for site in WINDOWS_SITES for code in WINDOWS_FAULTS
]


class Faults:
    """Wraps one OS callable so that its matching calls fail while ``armed`` is set."""

    def __init__(self, backend: Backend, mocker: MockerFixture) -> None:
        self.backend = backend
        self.mocker = mocker
        self.armed: int | None = None
        self.calls: list[str] = []

    def wrap(self, name: str, matches: Callable[[tuple[Any, ...]], Any]) -> None:
        if isinstance(self.backend, PosixBackend):
            target: Any = self.backend.libc
            real = getattr(target, name)

            def posix(*args: Any) -> CallResult:
                self.calls.append(name)
                if self.armed is not None and matches(args):
                    code, self.armed = self.armed, None
                    return CallResult(MAP_FAILED if name == "mmap" else -1, code)
                result: CallResult = real(*args)
                return result

            self.mocker.patch.object(target, name, side_effect=posix)
        else:
            assert isinstance(self.backend, WindowsBackend)
            k32: Any = self.backend.k32
            real = getattr(k32, name)

            def windows(*args: Any) -> Any:
                self.calls.append(name)
                if self.armed is not None and matches(args):
                    code, self.armed = self.armed, None
                    k32.set_last_error(code)
                    return None if name == "VirtualAlloc" else 0
                return real(*args)

            self.mocker.patch.object(k32, name, side_effect=windows)


def backend_for(name: str, mocker: MockerFixture) -> Backend:
    if name == "win32-emulated":
        from arenacheck.backends.standin import EmulatedKernel32

        return WindowsBackend(EmulatedKernel32(), name)
    return open_backend(name)


def sites(backend: str) -> dict[str, tuple[str, Callable[[tuple[Any, ...]], Any]]]:
    return POSIX_SITES if backend == "posix-native" else WINDOWS_SITES


def os_view(backend: Backend, arena_r: int, g: Geometry) -> list[OsSpan]:
    return backend.query(arena_r, arena_r + g.reserved_size)


@pytest.fixture
def held() -> Iterator[list[Arena]]:
    arenas: list[Arena] = []
    yield arenas
    for a in arenas:
        if a.alive:
            a.free()


@pytest.mark.parametrize(("backend_id", "site", "code"), CASES, indirect=["backend_id"])
def test_fault_at_every_call_site(
    backend_id: str, site: str, code: int, mocker: MockerFixture, held: list[Arena]
) -> None:
    backend = backend_for(backend_id, mocker)
    g = Geometry.small(backend.page, backend.granularity)
    faults = Faults(backend, mocker)
    name, matches = sites(backend_id)[site]
    faults.wrap(name, matches)
    if site in ("reserve", "first-commit"):
        creation_leaves_nothing_reserved(backend, faults, g, code, site)
    else:
        failed_release_is_typed_and_arena_whole(backend, faults, g, code, held)


def creation_leaves_nothing_reserved(
    backend: Backend, faults: Faults, g: Geometry, code: int, site: str
) -> None:
    reserved: list[int] = []
    released: list[tuple[int, int]] = []
    real_reserve, real_release = backend.reserve, backend.release

    def spy_reserve(size: int) -> int:
        base = real_reserve(size)
        reserved.append(base)
        return base

    def spy_release(addr: int, size: int) -> None:
        real_release(addr, size)
        released.append((addr, size))

    backend.reserve = spy_reserve  # type: ignore[method-assign]
    backend.release = spy_release  # type: ignore[method-assign]
    faults.armed = code
    with pytest.raises(OSCallFailed) as caught:
        Arena.new(backend, g)
    assert caught.value.code == code
    if site == "reserve":
        assert reserved == []
    else:
        (base,) = reserved
        assert released == [(base, g.reserved_size)]
        # Another allocator of this process may take the range the moment it is free; what
        # must not be there is our own inaccessible reservation.
        view = os_view(backend, base, g)
        assert not [s for s in view if s.state is SpanState.RESERVED], view


def failed_release_is_typed_and_arena_whole(
    backend: Backend, faults: Faults, g: Geometry, code: int, held: list[Arena]
) -> None:
    arena = Arena.new(backend, g)
    held.append(arena)
    addr = arena.alloc(100)
    arena.write(addr, b"k" * 100)
    before = os_view(backend, arena.reservation, g)
    faults.armed = code
    with pytest.raises(OSCallFailed) as caught:
        arena.free()
    assert caught.value.code == code
    assert arena.alive
    assert os_view(backend, arena.reservation, g) == before
    assert arena.read(addr, 100) == b"k" * 100
    arena.free()
    assert not arena.alive


@pytest.mark.parametrize(
    ("backend_id", "code"),
    [("posix-native", c) for c in POSIX_FAULTS] + [("win32-emulated", c) for c in WINDOWS_FAULTS],
    indirect=["backend_id"],
)
def test_failed_grow_changes_nothing_and_the_arena_stays_usable(
    backend_id: str, code: int, mocker: MockerFixture, held: list[Arena]
) -> None:
    backend = backend_for(backend_id, mocker)
    g = Geometry.small(backend.page, backend.granularity)
    arena = Arena.new(backend, g)
    held.append(arena)
    faults = Faults(backend, mocker)
    name = "mprotect" if backend_id == "posix-native" else "VirtualAlloc"
    faults.wrap(name, (lambda a: True) if name == "mprotect" else (lambda a: a[2] == MEM_COMMIT))
    first = arena.alloc(1000)
    arena.write(first, b"x" * 1000)
    state = (arena.start, arena.cursor)
    view = os_view(backend, arena.reservation, g)
    faults.armed = code
    assert arena.try_alloc(64 * 1024) is None
    assert (arena.start, arena.cursor) == state
    faults.armed = code
    with pytest.raises(ArenaFull):
        arena.alloc(64 * 1024)
    assert (arena.start, arena.cursor) == state
    assert os_view(backend, arena.reservation, g) == view
    assert arena.read(first, 1000) == b"x" * 1000
    grown = arena.alloc(64 * 1024)  # the fault is gone: the same grow now succeeds
    model = ArenaModel(g, arena.reservation)
    model.start, model.cursor = arena.start, arena.cursor
    assert os_view(backend, arena.reservation, g) == model.expected_view()
    assert grown == arena.cursor


@pytest.mark.parametrize("backend_id", ["posix-native", "win32-emulated"], indirect=True)
def test_a_dead_arena_makes_no_os_call(backend_id: str, mocker: MockerFixture) -> None:
    backend = backend_for(backend_id, mocker)
    g = Geometry.small(backend.page, backend.granularity)
    arena = Arena.new(backend, g)
    arena.free()
    faults = Faults(backend, mocker)
    for name, matches in sites(backend_id).values():
        faults.wrap(name, matches)
    with pytest.raises(DoubleFree):
        arena.free()
    for op in (lambda: arena.alloc(8), arena.reset, lambda: arena.read(arena.footer - 8, 8)):
        with pytest.raises(UseAfterFree):
            op()
    assert faults.calls == []


@pytest.mark.parametrize("geometry_name", ["small", "oxc"])
def test_fault_machine(backend_name: str, geometry_name: str) -> None:
    run_machine(machine_for(backend_name, geometry_name, faults=True), backend_name=backend_name)
