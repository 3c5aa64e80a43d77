"""The Wine kernel32 proxy: ctypes' call shapes and last-error rules, memory over the pipe.

Tests that need Wine take the ``wine`` fixture: skipped where this machine lacks Wine or
``--arenacheck-backend`` leaves it out, failed where ``ARENACHECK_REQUIRE_BACKENDS`` requires it.
"""

from __future__ import annotations

import ctypes
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from arenacheck.backends import wine_kernel32
from arenacheck.backends.registry import open_backend
from arenacheck.backends.wine_kernel32 import (
    InaccessibleMemory,
    WineBackend,
    WineKernel32,
    WineServer,
    WineServerDied,
    start_server,
)
from arenacheck.impl import host
from arenacheck.impl.win_kernel32 import MEMORY_BASIC_INFORMATION, SYSTEM_INFO
from arenacheck.model.win_constants import (
    ERROR_INVALID_PARAMETER,
    MEM_COMMIT,
    MEM_FREE,
    MEM_RELEASE,
    MEM_RESERVE,
    PAGE_GUARD,
    PAGE_NOACCESS,
    PAGE_READONLY,
    PAGE_READWRITE,
)

SENTINEL = 0xDEADBEEF


@pytest.fixture
def k32(wine: str) -> Iterator[WineKernel32]:
    backend = open_backend(wine)
    assert isinstance(backend, WineBackend)
    yield backend.wine


def call(k32: WineKernel32, fn: object, *args: object) -> tuple[object, int]:
    k32.set_last_error(SENTINEL)
    result = fn(*args)  # type: ignore[operator]
    return result, k32.get_last_error()


# ------------------------------------------------------------------ without Wine


@pytest.mark.linux_only("`sh` on PATH, standing in for an installed mingw-w64 compiler")
def test_unavailable_reason_names_exactly_what_is_missing(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(host, "IS_LINUX", True)
    monkeypatch.setattr(wine_kernel32, "WINE64", tmp_path / "wine64")
    monkeypatch.setattr(wine_kernel32, "MINGW_GCC", "no-such-mingw-gcc")
    reason = wine_kernel32.unavailable_reason()
    assert reason is not None
    assert "Debian's wine64" in reason and str(tmp_path / "wine64") in reason
    assert "gcc-mingw-w64-x86-64" in reason and "no-such-mingw-gcc" in reason
    monkeypatch.setattr(wine_kernel32, "MINGW_GCC", "sh")
    reason = wine_kernel32.unavailable_reason()
    assert reason is not None and "mingw" not in reason
    monkeypatch.setattr(host, "IS_LINUX", False)
    monkeypatch.setattr(host, "PLATFORM", "darwin")
    assert "darwin" in str(wine_kernel32.unavailable_reason())


@pytest.mark.linux_only("os.getuid(), part of the server build directory's name")
def test_the_build_lives_outside_the_source_tree_keyed_by_the_source(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    root = wine_kernel32.SOURCE.parent.parent
    first = wine_kernel32.build_dir()
    assert root not in first.parents
    changed = tmp_path / "wine_vmserver.c"
    changed.write_bytes(wine_kernel32.SOURCE.read_bytes() + b"\n/* changed */\n")
    monkeypatch.setattr(wine_kernel32, "SOURCE", changed)
    assert wine_kernel32.build_dir() != first


# What fake_wine's stand-ins run on.
FAKE_WINE_NEEDS = pytest.mark.linux_only(
    "a /bin/sh script to stand in for wine64 and /bin/true for wineserver"
)


def fake_wine(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, script: str) -> None:
    """Stand a shell script in for ``wine64`` (and nothing for ``wineserver``)."""
    fake = tmp_path / "wine64"
    fake.write_text(f"#!/bin/sh\n{script}\n")
    fake.chmod(0o755)
    monkeypatch.setattr(wine_kernel32, "WINE64", fake)
    monkeypatch.setattr(wine_kernel32, "WINESERVER64", Path("/bin/true"))


@FAKE_WINE_NEEDS
def test_a_dead_server_reports_its_status_and_last_stderr_lines(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A server that dies before answering: the error names the status and what it said."""
    fake_wine(monkeypatch, tmp_path, "echo 'first line' >&2\necho 'the last words' >&2\nexit 3")
    with pytest.raises(WineServerDied) as caught:
        WineServer(tmp_path / "server.exe")
    message = str(caught.value)
    assert "exited with status 3" in message
    assert "the last words" in message and "first line" in message


@FAKE_WINE_NEEDS
def test_a_server_that_dies_starting_every_time_fails_naming_each_fresh_prefix(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Each attempt gets a prefix of its own; when all die, the error carries every cause."""
    fake_wine(monkeypatch, tmp_path, 'echo "prefix $WINEPREFIX" >&2\nexit 53')
    with pytest.raises(WineServerDied) as caught:
        start_server(tmp_path / "server.exe", attempts=2)
    message = str(caught.value)
    assert "2 times" in message and message.count("exited with status 53") == 2
    prefixes = re.findall(r"prefix (\S+)", message)
    assert len(prefixes) == 2 and prefixes[0] != prefixes[1], message


def test_a_server_that_dies_starting_once_is_started_again_with_a_warning(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    started: list[Path] = []

    class DiesOnce:
        def __init__(self, exe: Path) -> None:
            started.append(exe)
            if len(started) == 1:
                raise WineServerDied("could not load kernel32.dll, status c0000135")

    monkeypatch.setattr(wine_kernel32, "WineServer", DiesOnce)
    with pytest.warns(RuntimeWarning, match="fresh prefix: could not load kernel32.dll"):
        server = start_server(tmp_path / "server.exe")
    assert isinstance(server, DiesOnce) and len(started) == 2


# --------------------------------------------------------------------- with Wine


def test_system_info_is_windows_x64(k32: WineKernel32) -> None:
    si = SYSTEM_INFO()
    k32.GetSystemInfo(ctypes.byref(si))
    assert (si.dwPageSize, si.dwAllocationGranularity) == (0x1000, 0x10000)
    assert si.lpMinimumApplicationAddress == 0x10000
    assert si.lpMaximumApplicationAddress == 0x7FFFFFFEFFFF


def test_call_shapes_are_ctypes(k32: WineKernel32) -> None:
    base, error = call(k32, k32.VirtualAlloc, None, 0x10000, MEM_RESERVE, PAGE_NOACCESS)
    assert isinstance(base, int) and base % 0x10000 == 0
    assert error == SENTINEL, "a successful call leaves the last error alone"
    try:
        assert call(k32, k32.VirtualAlloc, None, 0, MEM_RESERVE, PAGE_NOACCESS) == (
            None,
            ERROR_INVALID_PARAMETER,
        )
        # byref(), pointer() and the structure itself are all accepted, as by argtypes.
        for make in (ctypes.byref, ctypes.pointer, lambda m: m):
            mbi = MEMORY_BASIC_INFORMATION()
            assert k32.VirtualQuery(base, make(mbi), ctypes.sizeof(mbi)) == 48
            assert (mbi.BaseAddress, mbi.AllocationBase, mbi.State) == (base, base, MEM_RESERVE)
            assert (mbi.RegionSize, mbi.Protect, mbi.AllocationProtect) == (0x10000, 0, 1)
        with pytest.raises(ctypes.ArgumentError):
            k32.VirtualQuery(base, ctypes.byref(SYSTEM_INFO()), 48)
        with pytest.raises(ctypes.ArgumentError):
            k32.VirtualAlloc(str(base), 0x1000, MEM_COMMIT, PAGE_READWRITE)
        # Like c_size_t: -1 is 2**64 - 1, past the top of user space.
        assert call(k32, k32.VirtualAlloc, None, -1, MEM_RESERVE, PAGE_NOACCESS) == (
            None,
            ERROR_INVALID_PARAMETER,
        )
    finally:
        assert call(k32, k32.VirtualFree, base, 0, MEM_RELEASE) == (1, SENTINEL)
    # A NULL pointer field reads back as None, as ctypes' c_void_p does.
    mbi = MEMORY_BASIC_INFORMATION()
    assert k32.VirtualQuery(base, ctypes.byref(mbi), 48) == 48
    assert (mbi.State, mbi.AllocationBase) == (MEM_FREE, None)


def test_a_short_buffer_is_refused_and_left_alone(k32: WineKernel32) -> None:
    mbi = MEMORY_BASIC_INFORMATION()
    mbi.RegionSize = 1234
    assert call(k32, k32.VirtualQuery, 0x10000, ctypes.byref(mbi), 47) == (0, 24)
    assert mbi.RegionSize == 1234


def test_the_last_error_is_a_private_value_like_ctypes(k32: WineKernel32) -> None:
    assert k32.set_last_error(7) is not None
    assert k32.set_last_error(SENTINEL) == 7
    assert k32.VirtualFree(0x10000, 1, MEM_RELEASE) == 0
    assert k32.get_last_error() == ERROR_INVALID_PARAMETER
    assert k32.set_last_error(0) == ERROR_INVALID_PARAMETER
    assert k32.get_last_error() == 0


def test_memory_moves_over_the_pipe_and_only_where_accessible(k32: WineKernel32) -> None:
    base = k32.VirtualAlloc(None, 0x4000, MEM_RESERVE, PAGE_NOACCESS)
    assert base is not None
    try:
        assert k32.VirtualAlloc(base, 0x1000, MEM_COMMIT, PAGE_READWRITE) == base
        assert k32.VirtualAlloc(base + 0x1000, 0x1000, MEM_COMMIT, PAGE_READONLY)
        guard = PAGE_READWRITE | PAGE_GUARD
        assert k32.VirtualAlloc(base + 0x2000, 0x1000, MEM_COMMIT, guard)
        assert k32.read(base, 8) == bytes(8), "fresh commits read zero"
        k32.write(base + 0xFFC, b"wine")
        assert k32.read(base + 0xFFA, 8) == b"\0\0wine\0\0"
        data = bytes(range(256)) * 16
        k32.write(base, data)
        assert k32.read(base, len(data)) == data
        with pytest.raises(InaccessibleMemory, match="Protect 0x2"):
            k32.write(base + 0xFFF, b"ab")  # runs into the read-only page
        assert k32.read(base + 0xFFF, 1) == data[-1:], "a refused write writes nothing"
        with pytest.raises(InaccessibleMemory, match="Protect 0x104"):
            k32.read(base + 0x1FFF, 2)  # runs into the guard page, which stays a guard
        with pytest.raises(InaccessibleMemory, match="State 0x2000"):
            k32.read(base + 0x3000, 1)  # reserved only
        mbi = MEMORY_BASIC_INFORMATION()
        k32.VirtualQuery(base + 0x2000, ctypes.byref(mbi), 48)
        assert mbi.Protect == guard
        with pytest.raises(TypeError):
            k32.write(base, "text")  # type: ignore[arg-type]
    finally:
        assert k32.VirtualFree(base, 0, MEM_RELEASE) == 1
