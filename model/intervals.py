"""A map from disjoint half-open address ranges to values.

Both VM models keep per-page state for reservations of gigabytes, so they store runs of
equal pages instead of pages. Adjacent runs with equal values are merged on every write,
which keeps the representation canonical: two maps holding the same page states compare
equal run for run.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Generic, TypeVar

V = TypeVar("V")


@dataclass(frozen=True)
class Run(Generic[V]):
    start: int
    end: int
    value: V

    @property
    def size(self) -> int:
        return self.end - self.start


class IntervalMap(Generic[V]):
    """Disjoint runs ``[start, end) -> value``; addresses outside every run are unset."""

    def __init__(self) -> None:
        self._starts: list[int] = []
        self._runs: list[Run[V]] = []

    def __len__(self) -> int:
        return len(self._runs)

    def __iter__(self) -> Iterator[Run[V]]:
        return iter(list(self._runs))

    def copy(self) -> IntervalMap[V]:
        other: IntervalMap[V] = IntervalMap()
        other._starts = list(self._starts)
        other._runs = list(self._runs)
        return other

    def run_at(self, addr: int) -> Run[V] | None:
        i = bisect_right(self._starts, addr) - 1
        if i >= 0 and self._runs[i].end > addr:
            return self._runs[i]
        return None

    def get(self, addr: int) -> V | None:
        run = self.run_at(addr)
        return None if run is None else run.value

    def next_start_at_or_after(self, addr: int) -> int | None:
        """Start of the first run that begins at or after ``addr``."""
        i = bisect_right(self._starts, addr - 1)
        return self._starts[i] if i < len(self._starts) else None

    def overlapping(self, lo: int, hi: int) -> list[Run[V]]:
        """The runs intersecting ``[lo, hi)``, clipped to it, in address order."""
        if hi <= lo:
            return []
        i = max(bisect_right(self._starts, lo) - 1, 0)
        out: list[Run[V]] = []
        while i < len(self._runs) and self._runs[i].start < hi:
            run = self._runs[i]
            if run.end > lo:
                out.append(Run(max(run.start, lo), min(run.end, hi), run.value))
            i += 1
        return out

    def segments(self, lo: int, hi: int) -> list[Run[V | None]]:
        """``[lo, hi)`` cut into runs and gaps; a gap has value ``None``."""
        out: list[Run[V | None]] = []
        cursor = lo
        for run in self.overlapping(lo, hi):
            if run.start > cursor:
                out.append(Run(cursor, run.start, None))
            out.append(Run(run.start, run.end, run.value))
            cursor = run.end
        if cursor < hi:
            out.append(Run(cursor, hi, None))
        return out

    def covers(self, lo: int, hi: int) -> bool:
        """True when every address of ``[lo, hi)`` lies in some run."""
        return all(seg.value is not None for seg in self.segments(lo, hi))

    def set(self, lo: int, hi: int, value: V | None) -> None:
        """Give every address of ``[lo, hi)`` the value ``value`` (``None`` unsets)."""
        if hi <= lo:
            return
        keep_before: list[Run[V]] = []
        keep_after: list[Run[V]] = []
        i = max(bisect_right(self._starts, lo) - 1, 0)
        j = i
        while j < len(self._runs) and self._runs[j].start < hi:
            run = self._runs[j]
            if run.end <= lo:
                keep_before.append(run)
            else:
                if run.start < lo:
                    keep_before.append(Run(run.start, lo, run.value))
                if run.end > hi:
                    keep_after.append(Run(hi, run.end, run.value))
            j += 1
        middle: list[Run[V]] = [] if value is None else [Run(lo, hi, value)]
        replacement = keep_before + middle + keep_after
        self._runs[i:j] = replacement
        self._coalesce(max(i - 1, 0), i + len(replacement) + 1)
        self._starts = [r.start for r in self._runs]

    def _coalesce(self, lo_index: int, hi_index: int) -> None:
        k = lo_index
        while k + 1 < min(hi_index, len(self._runs)):
            a, b = self._runs[k], self._runs[k + 1]
            if a.end == b.start and a.value == b.value:
                self._runs[k : k + 2] = [Run(a.start, b.end, a.value)]
                hi_index -= 1
            else:
                k += 1
