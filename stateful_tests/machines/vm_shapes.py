"""Address and length shapes shared by the VM machines.

Like allocation sizes, offsets and lengths are drawn relative to a region (its start or
its end, plus a small delta around page and granularity boundaries) and resolved when
the rule runs, so strategies never see a real address.
"""

from __future__ import annotations

from dataclasses import dataclass

from arenacheck.record.trace import shape
from hypothesis import strategies as st

DELTAS = (0, 1, 2, 0xFFE, 0xFFF, 0x1000, 0x1001, 0x1FFF, 0x2000, 0x10000)


@shape
@dataclass(frozen=True)
class Offset:
    """``from_end`` False: region start + delta; True: region end - delta."""

    from_end: bool
    delta: int

    def resolve(self, base: int, size: int) -> int:
        return base + size - self.delta if self.from_end else base + self.delta

    def __repr__(self) -> str:
        return f"Offset({'end' if self.from_end else 'start'}, {self.delta:#x})"


@shape
@dataclass(frozen=True)
class Length:
    """``to_end``: up to the region's end plus ``delta`` (which may run past it)."""

    to_end: bool
    delta: int

    def resolve(self, addr: int, base: int, size: int) -> int:
        if self.to_end:
            return max(base + size - addr + self.delta, 0)
        return self.delta

    def __repr__(self) -> str:
        return f"Length({'to-end' if self.to_end else 'fixed'}, {self.delta:#x})"


def offsets() -> st.SearchStrategy[Offset]:
    return st.builds(Offset, st.booleans(), st.sampled_from(DELTAS))


def lengths(past_end: bool = True) -> st.SearchStrategy[Length]:
    end_deltas = (-0x1000, 0, 0x1000) if past_end else (-0x1000, 0)
    return st.one_of(
        st.builds(Length, st.just(False), st.sampled_from((0, 1, 2, 0x1000, 0x1001, 0x2000))),
        st.builds(Length, st.just(True), st.sampled_from(end_deltas)),
    )


# Both VM machines hold at most this many regions of their own at once.
MAX_LIVE = 5
SIZE_NAMES = ("page", "two pages", "0xfffc", "granule", "three granules", "reservation")


def named_sizes(page: int, reserved_size: int) -> dict[str, int]:
    """Region sizes around page and 64 KiB boundaries, and the geometry's whole reservation."""
    sizes = (page, 2 * page, 0xFFFC, 0x10000, 0x30000, reserved_size)
    return dict(zip(SIZE_NAMES, sizes, strict=True))


@dataclass(eq=False)
class Region:
    """A range a VM machine mapped or reserved, named in traces by its number."""

    number: int
    base: int
    size: int

    @property
    def end(self) -> int:
        return self.base + self.size

    @property
    def trace_name(self) -> str:
        return f"region{self.number}"

    def __repr__(self) -> str:
        return self.trace_name
