"""The interface every OS backend offers the arena and the harness.

A backend makes four kinds of virtual-memory call and reports the OS's own view of a
range. Invariant: a backend method either does exactly what it says or raises
``OSCallFailed`` carrying the OS's code; it never retries or rounds on its own.
"""

from __future__ import annotations

import ctypes
from abc import ABC, abstractmethod
from collections.abc import Iterable
from typing import TYPE_CHECKING

# The span types are the model's; importers of this module still find them here.
from arenacheck.model.spans import OsSpan, SpanState, merge_spans, prot_letters

if TYPE_CHECKING:
    from arenacheck.impl.win_kernel32 import Kernel32

__all__ = [
    "Backend",
    "OsSpan",
    "SpanState",
    "merge_spans",
    "prot_letters",
    "spans_of",
]


def spans_of(mappings: Iterable[tuple[int, int, str]], lo: int, hi: int) -> list[OsSpan]:
    """``[lo, hi)`` as spans, from the OS's mappings (start, end, perms) in ascending order.

    Each mapping is clipped to the range (an anonymous mapping can merge with an unrelated
    neighbour that has the same flags); gaps are FREE, ``---`` RESERVED, anything else
    COMMITTED; adjacent mappings that look the same are one span (they differ in flags the
    OS does not show). ``mappings`` is read no further than the first one reaching ``hi``,
    so a reader that asks the OS one mapping at a time asks no more than it must.
    """
    out: list[OsSpan] = []
    cursor = lo
    for start, end, perms in mappings:
        if end <= cursor:
            continue
        if start >= hi:
            break
        if start > cursor:
            out.append(OsSpan(cursor, start, SpanState.FREE))
            cursor = start
        end = min(end, hi)
        state = SpanState.RESERVED if perms == "---" else SpanState.COMMITTED
        last = out[-1] if out else None
        if last is not None and last.state is state and last.prot == perms:
            out[-1] = OsSpan(last.start, end, state, perms)
        else:
            out.append(OsSpan(cursor, end, state, perms))
        cursor = end
        if cursor >= hi:
            break
    if cursor < hi:
        out.append(OsSpan(cursor, hi, SpanState.FREE))
    return out


class Backend(ABC):
    """Reserve, commit, decommit, release, query, read, write."""

    name: str
    page: int
    granularity: int
    # Whether ``release`` may give back part of a reservation (munmap can; VirtualFree
    # with MEM_RELEASE cannot).
    partial_release: bool = True
    # Whether the calls act on this Python process's own address space, where the
    # interpreter itself allocates at any moment (between a check and a call included).
    acts_in_this_process: bool = True

    @property
    def kernel32(self) -> Kernel32 | None:
        """The Windows kernel32 this backend calls through, or None where there is none.

        The capability beside the calls: through it the harness tells the OS family apart
        and reads the emulated kernel's commit charge, and an implementation may call
        kernel32 itself. A wrapper answers with the kernel32 of the backend it wraps.
        """
        return None

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
