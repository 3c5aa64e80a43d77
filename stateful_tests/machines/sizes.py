"""Allocation sizes and alignments biased to the arena's boundaries.

A size is drawn as a ``SizeSpec``: a boundary named relative to the model's state plus a
small delta, resolved to bytes only when the rule runs. Strategies therefore never read
real addresses or the OS, and a printed program says what it meant ("capacity + 1"),
so it replays on any machine where the OS hands out a different base.
"""

from __future__ import annotations

from dataclasses import dataclass

from arenacheck.model.arena import ArenaModel
from arenacheck.model.arith import ISIZE_MAX
from arenacheck.record.trace import shape
from hypothesis import strategies as st

BOUNDARY_KINDS = ("capacity", "double", "container", "page", "half", "max", "isize")


@shape
@dataclass(frozen=True)
class SizeSpec:
    """``kind`` names a boundary; ``delta`` is added to it.

    fixed: delta itself; capacity: P - S (fits without growing); double: the size whose
    grow lands exactly on the doubled commit; container: P - C (whole container);
    page: the OS page; half: half of what the container still takes (a grow past half the
    container, after which doubling meets the cap at C); max: the largest allocation a
    fresh arena takes; isize: 2**63 - 1.
    """

    kind: str
    delta: int

    def resolve(self, model: ArenaModel) -> int:
        g = model.geometry
        if self.kind == "fixed":
            base = 0
        elif self.kind == "capacity":
            base = model.cursor - model.start
        elif self.kind == "double":
            base = model.cursor - max(model.start - model.committed_bytes, model.container)
        elif self.kind == "container":
            base = model.cursor - model.container
        elif self.kind == "page":
            base = g.page
        elif self.kind == "half":
            base = (model.cursor - model.container) // 2
        elif self.kind == "max":
            base = g.max_alloc
        elif self.kind == "isize":
            base = ISIZE_MAX
        else:
            raise ValueError(f"unknown size kind {self.kind!r}")
        return base + self.delta

    def __repr__(self) -> str:
        return f"SizeSpec({self.kind!r}, {self.delta})"


def sizes() -> st.SearchStrategy[SizeSpec]:
    """Mostly boundary sizes +/- 1, some small fixed sizes, some arbitrary ones."""
    return st.one_of(
        st.builds(SizeSpec, st.just("fixed"), st.sampled_from([0, 1, 7, 8, 16, 100])),
        st.builds(SizeSpec, st.sampled_from(BOUNDARY_KINDS[:4]), st.sampled_from([-1, 0, 1])),
        # Past the doubled commit by a page and a byte: the grow lands on an uneven size, so
        # later doublings cross half the container and reach the cap at C off the beat.
        st.builds(SizeSpec, st.just("double"), st.sampled_from([4097, 65537])),
        st.builds(SizeSpec, st.just("half"), st.sampled_from([0, 4097])),
        st.builds(SizeSpec, st.just("max"), st.sampled_from([0, 1])),
        st.builds(SizeSpec, st.just("isize"), st.sampled_from([0, -1])),
        st.builds(SizeSpec, st.just("fixed"), st.integers(0, 1 << 15)),
    )


def aligns() -> st.SearchStrategy[int]:
    return st.sampled_from([1, 1, 2, 4, 8, 16, 64, 4096, 1 << 16])


# Bad layouts: each is refused with a typed error before any state changes.
BAD_LAYOUTS: tuple[tuple[object, object], ...] = (
    (-1, 1),
    (8, 0),
    (8, 3),
    (8, -8),
    (8, 1 << 64),
    (1 << 63, 1),
    (ISIZE_MAX, 2),
    ("8", 1),
    (8.0, 1),
    (True, 1),
    (None, 1),
    (8, True),
    (8, "8"),
)
