"""The arena's geometry as a value: every size the algorithm derives from.

Invariant: a constructed Geometry is internally consistent (powers of two where the
algorithm masks, page multiples where the OS needs them, and the regions of docs/ARENA.md
section 1 nested in order), so the models and the implementation never re-validate it.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from arenacheck.model.arith import is_power_of_two, round_up

KIB = 1 << 10
MIB = 1 << 20
GIB = 1 << 30

FOOTER_SIZE = 48
TRANSFER_METADATA_SIZE = 16
POOL_METADATA_SIZE = 8


class GeometryError(ValueError):
    """A geometry whose sizes the arena algorithm cannot work with."""


@dataclass(frozen=True)
class Geometry:
    name: str
    page: int
    granularity: int
    container_align: int
    block_size: int
    first_commit: int
    footer_size: int = FOOTER_SIZE

    def __post_init__(self) -> None:
        checks: list[tuple[bool, str]] = [
            (is_power_of_two(self.page), f"page {self.page} is not a power of two"),
            (
                is_power_of_two(self.granularity) and self.granularity % self.page == 0,
                f"granularity {self.granularity} is not a power-of-two multiple of the page",
            ),
            (
                is_power_of_two(self.container_align) and self.container_align >= self.granularity,
                f"container_align {self.container_align} is not a power of two >= granularity",
            ),
            (
                self.first_commit > 0 and self.first_commit % self.page == 0,
                f"first_commit {self.first_commit} is not a positive page multiple",
            ),
            (
                self.block_size > self.metadata_bytes,
                f"block_size {self.block_size} leaves no allocatable bytes",
            ),
            (
                self.first_commit <= self.container_size,
                "first_commit is larger than the container",
            ),
            (
                self.container_size - self.first_commit <= self.footer_offset,
                "the first commit does not reach down to the footer",
            ),
        ]
        for ok, message in checks:
            if not ok:
                raise GeometryError(f"geometry {self.name!r}: {message}")

    @cached_property
    def metadata_bytes(self) -> int:
        return self.footer_size + POOL_METADATA_SIZE + TRANSFER_METADATA_SIZE

    @cached_property
    def container_size(self) -> int:
        return round_up(self.block_size, self.page)

    @cached_property
    def reserved_size(self) -> int:
        return self.container_size + self.container_align

    @cached_property
    def footer_offset(self) -> int:
        """Offset of the footer F from the container base C."""
        return self.block_size - self.footer_size

    @cached_property
    def active_size(self) -> int:
        return self.block_size - self.metadata_bytes

    @cached_property
    def buffer_size(self) -> int:
        return self.active_size + TRANSFER_METADATA_SIZE

    @cached_property
    def initial_capacity(self) -> int:
        """Bytes a fresh plain arena holds before its first grow: ``F - S0``."""
        return self.footer_offset - (self.container_size - self.first_commit)

    @cached_property
    def max_alloc(self) -> int:
        """Largest single allocation with alignment 1 on a fresh plain arena."""
        return self.footer_offset

    @classmethod
    def oxc(cls, page: int = 4096, granularity: int | None = None) -> Geometry:
        """oxc's fixed-size arena: a 2 GiB container aligned on 4 GiB in 6 GiB."""
        return cls(
            name="oxc",
            page=page,
            granularity=page if granularity is None else granularity,
            container_align=4 * GIB,
            block_size=2 * GIB - 16,
            first_commit=16 * KIB,
        )

    @classmethod
    def small(cls, page: int = 4096, granularity: int | None = None) -> Geometry:
        """1 MiB container aligned on 2 MiB: "container full" within a few steps."""
        return cls(
            name="small",
            page=page,
            granularity=page if granularity is None else granularity,
            container_align=2 * MIB,
            block_size=1 * MIB - 16,
            first_commit=max(16 * KIB, page),
        )


GEOMETRY_NAMES = ("oxc", "small")


def geometry_named(name: str, page: int, granularity: int) -> Geometry:
    if name == "oxc":
        return Geometry.oxc(page, granularity)
    if name == "small":
        return Geometry.small(page, granularity)
    raise GeometryError(f"unknown geometry {name!r}; known: {', '.join(GEOMETRY_NAMES)}")
