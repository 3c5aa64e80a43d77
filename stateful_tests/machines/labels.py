"""Edge labels: named situations a machine reached (a grow, a double free, an errno).

``label`` reports to Hypothesis's statistics when a Hypothesis test is running, and always
counts in this process, so a replay outside Hypothesis works and a campaign can tell which
situations were never reached.
"""

from __future__ import annotations

from collections import Counter

from hypothesis import currently_in_test_context, event

COUNTS: Counter[str] = Counter()
RULES: Counter[str] = Counter()


def label(name: str) -> None:
    COUNTS[name] += 1
    if currently_in_test_context():
        event(name)


def reset() -> None:
    COUNTS.clear()
    RULES.clear()
