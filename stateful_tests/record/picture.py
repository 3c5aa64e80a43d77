"""Text pictures of an address range: one strip per view, labels at the addresses that matter.

A 6 GiB reservation with a 16 KiB commit does not fit a linear scale, so the range is cut at
every labelled address and every span boundary, and each piece gets a width that grows with
the logarithm of its size: every piece stays visible and the order is exact.
"""

from __future__ import annotations

import itertools
import math

from arenacheck.model.spans import OsSpan, SpanState

GLYPH = {SpanState.FREE: ".", SpanState.RESERVED: "-", SpanState.COMMITTED: "#"}
LEGEND = "legend: '#' committed, '-' reserved, '.' free, '?' mixed"


def _state_in(spans: list[OsSpan], lo: int, hi: int) -> str:
    states = {s.state for s in spans if s.start < hi and s.end > lo}
    if not states:
        return GLYPH[SpanState.FREE]
    return GLYPH[states.pop()] if len(states) == 1 else "?"


def strips(lo: int, hi: int, rows: dict[str, list[OsSpan]], labels: dict[str, int]) -> str:
    """Rows of glyphs over ``[lo, hi)`` with every label placed at its address."""
    cuts = {lo, hi}
    cuts.update(a for a in labels.values() if lo <= a <= hi)
    for spans in rows.values():
        for s in spans:
            cuts.update(x for x in (s.start, s.end) if lo <= x <= hi)
    points = sorted(cuts)
    widths = [max(2, round(math.log2(max(b - a, 1)) / 2)) for a, b in itertools.pairwise(points)]
    starts = [sum(widths[:i]) for i in range(len(widths) + 1)]
    head = max(len(name) for name in rows) + 2
    lines = []
    for name, spans in rows.items():
        cells = "".join(
            _state_in(spans, a, b) * w
            for (a, b), w in zip(itertools.pairwise(points), widths, strict=False)
        )
        lines.append(f"{name:<{head}}|{cells}|")
    # Labels: a caret under each labelled address, names stacked when they collide.
    marks = [" "] * (starts[-1] + 1)
    names: list[str] = []
    by_addr: dict[int, list[str]] = {}
    for label, addr in labels.items():
        if lo <= addr <= hi:
            by_addr.setdefault(addr, []).append(label)
    for addr in sorted(by_addr):
        marks[starts[points.index(addr)]] = "^"
        names.append("=".join(by_addr[addr]) + f"=+{addr - lo:#x}")
    lines.append(" " * head + " " + "".join(marks).rstrip())
    lines.append(" " * head + " " + "  ".join(names))
    return "\n".join(lines)
