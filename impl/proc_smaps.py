"""Per-mapping accounting flags from /proc/self/smaps (docs/VM_SEMANTICS.md B.3).

``ac`` marks a mapping charged to Committed_AS, ``nr`` one mapped with MAP_NORESERVE.
"""

from __future__ import annotations

from dataclasses import dataclass

_PATH = "/proc/self/smaps"


@dataclass(frozen=True)
class VmaFlags:
    start: int
    end: int
    flags: frozenset[str]


def vma_flags(lo: int, hi: int) -> list[VmaFlags]:
    """The kernel's mappings intersecting ``[lo, hi)``, clipped, with their VmFlags."""
    with open(_PATH, "rb") as f:
        text = f.read()
    out: list[VmaFlags] = []
    start = end = 0
    for line in text.splitlines():
        head = line.split(b" ", 1)[0]
        if b"-" in head and not head.endswith(b":"):
            a, b = head.split(b"-")
            start, end = int(a, 16), int(b, 16)
        elif line.startswith(b"VmFlags:") and end > lo and start < hi:
            flags = frozenset(line[len(b"VmFlags:") :].decode().split())
            out.append(VmaFlags(max(start, lo), min(end, hi), flags))
    return out
