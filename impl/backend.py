"""The interface every OS backend offers the arena and the harness.

A backend makes four kinds of virtual-memory call and reports the OS's own view of a
range. Invariant: a backend method either does exactly what it says or raises
``OSCallFailed`` carrying the OS's code; it never retries or rounds on its own.
"""

from __future__ import annotations

import ctypes
import enum
from abc import ABC, abstractmethod
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


class Backend(ABC):
    """Reserve, commit, decommit, release, query, read, write."""

    name: str
    page: int
    granularity: int
    # Whether ``release`` may give back part of a reservation (munmap can; VirtualFree
    # with MEM_RELEASE cannot).
    partial_release: bool = True

    @abstractmethod
    def reserve(self, size: int) -> int:
        """Reserve ``size`` bytes anywhere, inaccessible and uncharged; returns the base."""

    def reserve_at(self, addr: int, size: int) -> bool:
        """Reserve exactly ``[addr, addr + size)``, never over another mapping; False if taken.

        A backend that cannot place a reservation says False, and a ``tight`` arena then
        falls back to ``reserve-commit``.
        """
        return False

    def reserve_aligned(self, size: int, align: int) -> int | None:
        """Reserve ``size`` bytes at an ``align``-aligned base in one call, where the OS can."""
        return None

    def reserve_committed(self, size: int) -> int:
        """Obtain ``size`` bytes anywhere, already committed read-write (and charged)."""
        base = self.reserve(size)
        try:
            self.commit(base, size)
        except BaseException:
            self.release(base, size)
            raise
        return base

    @abstractmethod
    def commit(self, addr: int, size: int) -> None:
        """Make ``[addr, addr + size)`` of a reservation read-write."""

    @abstractmethod
    def decommit(self, addr: int, size: int) -> None:
        """Return ``[addr, addr + size)`` to reserved, dropping its contents and charge."""

    @abstractmethod
    def release(self, addr: int, size: int) -> None:
        """Give the whole reservation at ``addr`` of ``size`` bytes back to the OS."""

    @abstractmethod
    def query(self, lo: int, hi: int) -> list[OsSpan]:
        """The OS's view of ``[lo, hi)``: spans clipped to it, gaps as FREE, merged."""

    def read(self, addr: int, n: int) -> bytes:
        """Copy ``n`` bytes out of memory the caller knows is committed and readable."""
        return ctypes.string_at(addr, n)

    def write(self, addr: int, data: bytes) -> None:
        """Copy ``data`` into memory the caller knows is committed read-write."""
        ctypes.memmove(addr, data, len(data))

    def close(self) -> None:  # noqa: B027 - optional hook, a no-op by default
        """Free whatever the backend itself holds (not the caller's reservations)."""
