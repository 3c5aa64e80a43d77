"""64-bit wrapping arithmetic shared by every model."""

from __future__ import annotations

MASK64 = (1 << 64) - 1
ISIZE_MAX = (1 << 63) - 1


def wrap(x: int) -> int:
    """Reduce ``x`` modulo 2**64, as an unsigned machine word would."""
    return x & MASK64


def round_down(x: int, align: int) -> int:
    """Largest multiple of ``align`` (a power of two) that is <= ``x``."""
    return x & ~(align - 1)


def round_up(x: int, align: int) -> int:
    """Smallest multiple of ``align`` (a power of two) that is >= ``x``."""
    return (x + align - 1) & ~(align - 1)


def is_power_of_two(x: int) -> bool:
    return x > 0 and x & (x - 1) == 0
