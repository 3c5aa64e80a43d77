"""Memory Wine holds for itself, which its VirtualQuery reports as free.

Wine's VirtualQuery answers from its views; what Wine maps outside them (its own heap, the
Linux libraries and stacks of the process) has no view, so it is MEM_FREE to VirtualQuery,
yet VirtualAlloc cannot reserve there (487). Only the Linux process's own maps show it. On
Windows VirtualQuery sees everything, and nothing here applies.

``WindowsBackend.hidden_mappings`` asks here. Two ways to the maps: ``win32-wine`` knows the
Linux pid of its server process; a Windows Python under Wine (``win32-native`` there) must
find its own, since Wine's file system
resolves ``/proc/self`` in wineserver, not in the caller. It maps one committed view of a
size and at an address drawn at random, with a protection nothing else uses, and looks for
the Linux process whose maps hold exactly that line.
"""

from __future__ import annotations

import functools
import os
import random
from pathlib import Path

from arenacheck.impl import host
from arenacheck.model.win_constants import MEM_COMMIT, MEM_RELEASE, MEM_RESERVE, PAGE_EXECUTE_READ

# Wine's default prefix maps drive Z: to the Linux root.
_PROC = Path("Z:/proc") if host.IS_WINDOWS else Path("/proc")
_MARK_TRIES = 64
_MARK_LOW, _MARK_HIGH = 0x100000000000, 0x700000000000


class OwnProcessNotFound(RuntimeError):
    """No Linux process, or more than one, holds this Windows process's marker view."""


def held_mappings(maps: str, lo: int, hi: int) -> list[str]:
    """Lines of a Linux maps text over ``[lo, hi)`` that Wine cannot map a view on.

    Inaccessible anonymous mappings are the reserved areas Wine places views in (and views
    themselves, which VirtualQuery does report), so they are left out; everything else is
    listed, as /proc shows it.
    """
    held = []
    for line in maps.splitlines():
        fields = line.split()
        start, end = (int(x, 16) for x in fields[0].split("-"))
        if end <= lo or start >= hi:
            continue
        anonymous = len(fields) < 6
        if anonymous and fields[1] == "---p":
            continue
        held.append(line)
    return held


def maps_of(pid: int) -> str:
    return (_PROC / str(pid) / "maps").read_text()


def _holders(line: str) -> list[int]:
    """The Linux processes whose maps hold ``line``'s range with ``line``'s protection."""
    found = []
    for entry in os.listdir(_PROC):
        if not entry.isdigit():
            continue
        try:
            text = maps_of(int(entry))
        except OSError:
            continue
        if any(m.split()[:2] == line.split() for m in text.splitlines()):
            found.append(int(entry))
    return found


@functools.cache
def own_linux_pid() -> int:
    """This Windows process's Linux pid under Wine, found by a marker view of its own."""
    from arenacheck.impl.win_kernel32 import (
        NativeKernel32,  # a Windows-only import, made when needed
    )

    k32 = NativeKernel32()
    draw = random.Random(os.urandom(16))
    for _ in range(_MARK_TRIES):
        addr = draw.randrange(_MARK_LOW, _MARK_HIGH, 0x10000)
        pages = draw.randrange(3, 200)
        size = pages * 0x1000
        base = k32.VirtualAlloc(addr, size, MEM_RESERVE | MEM_COMMIT, PAGE_EXECUTE_READ)
        if not base:
            continue
        try:
            holders = _holders(f"{int(base):x}-{int(base) + size:x} r-xp")
        finally:
            k32.VirtualFree(base, 0, MEM_RELEASE)
        if len(holders) == 1:
            return holders[0]
        raise OwnProcessNotFound(
            f"the marker view at {int(base):#x} ({size:#x} bytes) is in the maps of "
            f"{len(holders)} Linux processes: {holders}"
        )
    raise OwnProcessNotFound(f"no marker view could be placed in {_MARK_TRIES} tries")


def held_by_wine_here(lo: int, hi: int) -> list[str]:
    """What Wine holds in ``[lo, hi)`` of this Windows process (Windows Python under Wine)."""
    return held_mappings(maps_of(own_linux_pid()), lo, hi)
