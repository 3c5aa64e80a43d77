"""The Linux kernel's view of a range, from /proc/self/maps (VM_SEMANTICS.md B.3).

Lines are clipped to the range asked about, because an anonymous mapping can merge
with an unrelated neighbour that has the same flags.
"""

from __future__ import annotations

import os

from impl.backend import OsSpan, SpanState, merge_spans

_PATH = "/proc/self/maps"


def read_maps() -> bytes:
    """The whole file, read with as few read() calls as possible.

    Reading is not atomic and Python's own allocations may map memory between reads, so
    one large read is both faster and closer to a snapshot.
    """
    fd = os.open(_PATH, os.O_RDONLY)
    try:
        chunks = []
        while True:
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(fd)
    return b"".join(chunks)


def spans_in(maps: bytes, lo: int, hi: int) -> list[OsSpan]:
    """``[lo, hi)`` as spans: PROT_NONE lines are RESERVED, others COMMITTED, gaps FREE."""
    out: list[OsSpan] = []
    cursor = lo
    for line in maps.splitlines():
        dash = line.index(b"-")
        space = line.index(b" ", dash)
        start = int(line[:dash], 16)
        end = int(line[dash + 1 : space], 16)
        if end <= lo:
            continue
        if start >= hi:
            break
        perms = line[space + 1 : space + 4].decode()
        s, e = max(start, lo), min(end, hi)
        if s > cursor:
            out.append(OsSpan(cursor, s, SpanState.FREE))
        state = SpanState.RESERVED if perms == "---" else SpanState.COMMITTED
        out.append(OsSpan(s, e, state, perms))
        cursor = e
    if cursor < hi:
        out.append(OsSpan(cursor, hi, SpanState.FREE))
    return merge_spans(out)
