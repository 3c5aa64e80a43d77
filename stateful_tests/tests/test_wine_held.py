"""Memory Wine holds for itself: read from the Linux maps of the right process."""

from __future__ import annotations

import sys

import pytest
from arenacheck.impl import wine_held
from arenacheck.impl.win_kernel32 import ntdll_wine_version

MAPS = """\
00010000-00012000 r--s 00000000 fe:00 1548360        /usr/share/wine/nls/l_intl.nls
7ffe0000-7fff0000 ---p 00000000 00:00 0
7fff0000-7fff1000 rw-p 00000000 00:00 0
7f2ca8701000-7f2ca88e3000 r-xp 00000000 fe:00 12 /usr/lib/x86_64-linux-gnu/libc.so.6
"""


def test_reserved_areas_and_views_are_not_held_everything_else_is() -> None:
    lines = MAPS.splitlines()
    assert wine_held.held_mappings(MAPS, 0, 1 << 47) == [lines[0], lines[2], lines[3]]
    assert wine_held.held_mappings(MAPS, 0x7FFE0000, 0x7FFF0000) == []
    assert wine_held.held_mappings(MAPS, 0x12000, 0x7FFE0000) == []
    assert wine_held.held_mappings(MAPS, 0x11FFF, 0x12000) == [lines[0]]


@pytest.mark.skipif(
    sys.platform != "win32" or ntdll_wine_version() is None,
    reason="finds the Linux process of a Windows Python under Wine; "
    + ("this is Windows itself" if sys.platform == "win32" else f"this is {sys.platform}"),
)
def test_windows_python_under_wine_finds_its_own_linux_process() -> None:
    pid = wine_held.own_linux_pid()
    command = (wine_held._PROC / str(pid) / "cmdline").read_bytes()
    assert b"python.exe" in command, command
    # Its own image is in its maps: the Python DLL, mapped where this process sees it.
    dll_base: int = getattr(sys, "dllhandle")  # noqa: B009 - Windows only, unknown to mypy here
    maps = wine_held.maps_of(pid)
    assert any(line.startswith(f"{dll_base:08x}-") for line in maps.splitlines()), hex(dll_base)
