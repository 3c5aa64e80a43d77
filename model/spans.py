"""The OS's view of a range of memory, as runs of pages in one state.

Pure data: the OS backends build these from what the OS reports, and the models build the
same from what they predict, so the two compare span for span.
"""

from __future__ import annotations

import enum
from typing import NamedTuple


class SpanState(enum.Enum):
    FREE = "free"
    RESERVED = "reserved"
    COMMITTED = "committed"


class OsSpan(NamedTuple):
    """A run of pages in one state, as the OS reports it; ``prot`` as in /proc maps.

    A tuple, not a dataclass: every step builds and compares a few of these per arena."""

    start: int
    end: int
    state: SpanState
    prot: str = "---"

    @property
    def size(self) -> int:
        return self.end - self.start


def merge_spans(spans: list[OsSpan]) -> list[OsSpan]:
    """Join adjacent spans with equal state and protection (the OS may split them)."""
    out: list[OsSpan] = []
    for span in spans:
        last = out[-1] if out else None
        if (
            last is not None
            and last.end == span.start
            and last.state is span.state
            and last.prot == span.prot
        ):
            out[-1] = OsSpan(last.start, span.end, span.state, span.prot)
        else:
            out.append(span)
    return out


# "r", "w", "x" or "-" for each protection whose read, write and execute bits are 1, 2, 4:
# POSIX's PROT_*, XNU's VM_PROT_* and PROCMAP_QUERY's VMA flags alike.
_LETTERS = tuple(
    ("r" if p & 1 else "-") + ("w" if p & 2 else "-") + ("x" if p & 4 else "-") for p in range(8)
)


def prot_letters(prot: int) -> str:
    """A protection as the first three characters of /proc maps' perms column."""
    return _LETTERS[prot & 7]
