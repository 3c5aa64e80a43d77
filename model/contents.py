"""Expected memory contents, page by page.

Invariant: a page absent from both ``pages`` and ``unknown`` reads as zeros (fresh
anonymous memory); a page in ``unknown`` may hold anything (after MEM_RESET or
MADV_FREE the OS may or may not have discarded it), so reads of it are not checked.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from arenacheck.model.arith import round_down


@dataclass
class PageContents:
    page: int
    pages: dict[int, bytearray] = field(default_factory=dict)
    unknown: set[int] = field(default_factory=set)

    def _page_addrs(self, lo: int, hi: int) -> range:
        return range(round_down(lo, self.page), hi, self.page)

    def write(self, addr: int, data: bytes) -> None:
        pos = 0
        while pos < len(data):
            page = round_down(addr + pos, self.page)
            offset = addr + pos - page
            n = min(self.page - offset, len(data) - pos)
            buf = self.pages.setdefault(page, bytearray(self.page))
            buf[offset : offset + n] = data[pos : pos + n]
            self.unknown.discard(page)
            pos += n

    def expected(self, addr: int, n: int) -> bytes | None:
        """The bytes a read of ``[addr, addr + n)`` must return, or None if unpredictable."""
        out = bytearray()
        pos = 0
        while pos < n:
            page = round_down(addr + pos, self.page)
            if page in self.unknown:
                return None
            offset = addr + pos - page
            take = min(self.page - offset, n - pos)
            buf = self.pages.get(page)
            out += bytes(take) if buf is None else buf[offset : offset + take]
            pos += take
        return bytes(out)

    def zero(self, lo: int, hi: int) -> None:
        """The pages of ``[lo, hi)`` read as zeros from now on."""
        for page in self._touched_in(lo, hi):
            self.pages.pop(page, None)
            self.unknown.discard(page)

    def forget(self, lo: int, hi: int) -> None:
        """The pages of ``[lo, hi)`` that held data may now hold anything."""
        for page in self._touched_in(lo, hi):
            self.pages.pop(page, None)
            self.unknown.add(page)

    def _touched_in(self, lo: int, hi: int) -> list[int]:
        # Only pages ever written can differ from zero: iterate those, not the range,
        # because ranges here span gigabytes.
        return [p for p in (*self.pages, *self.unknown) if lo <= p < hi]
