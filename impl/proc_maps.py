"""The Linux kernel's view of a range, from /proc/self/maps (docs/VM_SEMANTICS.md B.3).

Lines are clipped to the range asked about, because an anonymous mapping can merge
with an unrelated neighbour that has the same flags. Where the kernel answers the
PROCMAP_QUERY ioctl (6.11 and later) the backend asks it instead
(:mod:`arenacheck.impl.procmap_query`): the same VMAs without reading the whole file; this
text reader is the fallback.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import TYPE_CHECKING

from arenacheck.impl.backend import spans_of
from arenacheck.model.spans import OsSpan

if TYPE_CHECKING:
    from arenacheck.impl.procmap_query import ProcmapQuery

_PATH = "/proc/self/maps"


# Allocated once: a fresh buffer of this size would be a new mapping, which the kernel
# tends to place in a hole just released, where a check would then see it.
_BUFFER = bytearray(8 << 20)


def read_maps() -> bytes:
    """The whole file, read into a buffer allocated once, in as few read() calls as possible.

    Reading is not atomic and Python's own allocations may map memory between reads, so
    one large read into memory that already exists is both faster and closer to a snapshot.
    """
    view = memoryview(_BUFFER)
    n = 0
    fd = os.open(_PATH, os.O_RDONLY)
    try:
        while n < len(view):
            got = os.readv(fd, [view[n:]])
            if got == 0:
                break
            n += got
    finally:
        os.close(fd)
        view.release()
    if n == len(_BUFFER):
        raise RuntimeError(f"{_PATH} is larger than {n} bytes")
    return bytes(_BUFFER[:n])


def mappings(maps: bytes) -> Iterator[tuple[int, int, str]]:
    """(start, end, perms) of each line, parsed only as far as it is read."""
    for line in maps.splitlines():
        dash = line.index(b"-")
        space = line.index(b" ", dash)
        perms = line[space + 1 : space + 4].decode()
        yield int(line[:dash], 16), int(line[dash + 1 : space], 16), perms


def spans_in(maps: bytes, lo: int, hi: int) -> list[OsSpan]:
    """``[lo, hi)`` as spans: PROT_NONE lines are RESERVED, others COMMITTED, gaps FREE."""
    return spans_of(mappings(maps), lo, hi)


class MapsText:
    """Spans read from the text of /proc/self/maps, one whole reading per query."""

    def spans_in(self, lo: int, hi: int) -> list[OsSpan]:
        return spans_in(read_maps(), lo, hi)


_READER: ProcmapQuery | MapsText | None = None


def linux_regions() -> ProcmapQuery | MapsText:
    """The cheapest reader of this kernel's view: the ioctl where it exists, else the text.

    One per process (a reader reopens itself after a fork): every backend opened asks
    the same kernel about the same process."""
    from arenacheck.impl.procmap_query import ProcmapQuery, ProcmapUnavailable

    global _READER
    if _READER is None:
        try:
            _READER = ProcmapQuery()
        except ProcmapUnavailable:
            _READER = MapsText()
    return _READER
