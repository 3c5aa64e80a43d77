"""The checks the machines share, each in one place: the assertion kit, the comparison of
the OS's view with the model's, the committed-memory confirmation and the commit charge.

Every failure raises :class:`Divergence` naming its check. :func:`fail` and :func:`expect`
name the function that calls them; a comparison made here on a machine's behalf
(:func:`expect_view`, :func:`expect_commit_charge`) names the machine's function that asked
for it, whose check it is part of; :func:`confirm_committed`, which guards memory before it
is touched, is a check of its own and names itself.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import NoReturn

from arenacheck.backends.standin import EmulatedKernel32
from arenacheck.harness.plugins import ArenaLike
from arenacheck.impl.backend import Backend
from arenacheck.impl.win_kernel32 import Kernel32
from arenacheck.model.arena import ArenaModel, OsCall
from arenacheck.model.arith import round_down, round_up
from arenacheck.model.spans import OsSpan, SpanState


class Divergence(AssertionError):
    """The implementation or the OS disagrees with the model; ``check`` names the check."""

    def __init__(self, message: str, check: str = "") -> None:
        super().__init__(message)
        self.check = check


def _caller(depth: int) -> str:
    """The name of the function ``depth`` calls above the one calling this."""
    return sys._getframe(depth + 1).f_code.co_name


def expect(ok: bool, message: str, check: str | None = None) -> None:
    if not ok:
        raise Divergence(message, check or _caller(1))


def fail(message: str, check: str | None = None) -> NoReturn:
    """A check failed. Checks run after every step call this only once they know, so the
    message (addresses, pictures of spans) is formatted for failures alone."""
    raise Divergence(message, check or _caller(1))


def divergence_in_flight() -> Divergence | None:
    """The Divergence on its way out of a machine, seen from its teardown, else None.

    Hypothesis tears a machine down in a ``finally`` clause, a replay in an ``except``
    clause: either way the exception that ended the run is the one being handled.
    """
    error = sys.exc_info()[1]
    return error if isinstance(error, Divergence) else None


PATTERN_CHUNK = 256


def pattern(seed: int, n: int) -> bytes:
    return bytes((seed * 131 + i * 7 + 1) & 0xFF for i in range(n))


def pattern_chunks(size: int) -> list[tuple[int, int]]:
    """Where patterns go in ``size`` bytes, as (offset, length): a head chunk, and a tail
    chunk only once both fit side by side, so that the two never overlap."""
    if size == 0:
        return []
    if size < 2 * PATTERN_CHUNK:
        return [(0, min(PATTERN_CHUNK, size))]
    return [(0, PATTERN_CHUNK), (size - PATTERN_CHUNK, PATTERN_CHUNK)]


def describe(spans: list[OsSpan], origin: int) -> str:
    return ", ".join(
        f"[+{s.start - origin:#x}, +{s.end - origin:#x}) {s.state.value} {s.prot}" for s in spans
    )


def expect_view(what: str, shown: list[OsSpan], expected: list[OsSpan], origin: int) -> None:
    """The OS shows exactly the spans the model expects (offsets printed from ``origin``)."""
    if shown != expected:
        fail(
            f"{what}: the OS shows {describe(shown, origin)}; "
            f"model expects {describe(expected, origin)}",
            _caller(1),
        )


def expect_calls(what: str, calls: list[OsCall], predicted: list[OsCall], page: int) -> None:
    """docs/ARENA.md 6.2 and 6.8: the OS calls made are exactly the predicted ones, each on
    whole pages. The same check for every machine that asks, so it names itself."""
    if calls != predicted:
        fail(
            f"{what}: OS calls {[str(c) for c in calls]}, model predicts "
            f"{[str(c) for c in predicted]}",
            "expect_calls",
        )
    for c in calls:
        if c.addr is not None and (c.addr % page or c.size <= 0 or c.size % page):
            fail(f"{what}: {c} is not page-granular", "expect_calls")


def expect_layout(what: str, arena: ArenaLike, model: ArenaModel) -> None:
    """docs/ARENA.md 6.1 to 6.5: the arena's R, C, S, P and F are the model's."""
    got = (arena.reservation, arena.container, arena.start, arena.cursor, arena.footer)
    want = (model.reservation, model.container, model.start, model.cursor, model.footer)
    for name, g_val, w_val in zip(("R", "C", "S", "P", "F"), got, want, strict=True):
        if g_val != w_val:
            fail(f"{what}: {name} is {g_val:#x}, model says {w_val:#x}", _caller(1))


def expect_bytes(backend: Backend, addr: int, data: bytes, message: str) -> None:
    """Memory at ``addr`` still holds ``data``, read from memory, not through the arena;
    the caller has made sure the range is committed read-write."""
    if backend.read(addr, len(data)) != data:
        fail(message, _caller(1))


def confirm_committed(backend: Backend, what: str, model: ArenaModel, lo: int, hi: int) -> None:
    """Model and OS both say ``[lo, hi)`` is committed read-write, or fail before touching."""
    if not (model.start <= lo and hi <= model.container_end):
        fail(f"{what}: model says [{lo:#x}, {hi:#x}) is not committed")
    page = model.geometry.page
    view = backend.query(round_down(lo, page), round_up(hi, page))
    if not all(s.state is SpanState.COMMITTED and "w" in s.prot for s in view):
        fail(
            f"{what}: the OS does not show [{lo:#x}, {hi:#x}) committed read-write: "
            f"{describe(view, model.container)}"
        )


def expect_commit_charge(
    kernel32: Kernel32 | None,
    accounted: int,
    ranges: Iterable[tuple[str, int, int]] = (),
    by: str = "the live arenas",
) -> None:
    """docs/ARENA.md 6.7, where the charge is observable (the emulated kernel32): the
    kernel's commit count is the ``accounted`` bytes ``by`` hold, and over each named range
    ``(name, lo, hi)`` the host's real memory is what the emulation says it is."""
    if not isinstance(kernel32, EmulatedKernel32):
        return
    got = kernel32.model.committed_bytes
    if got != accounted:
        fail(f"commit charge is {got}, {by} account for {accounted}", _caller(1))
    for name, lo, hi in ranges:
        problems = kernel32.host_disagreements(lo, hi)
        if problems:
            fail(f"{name}: {'; '.join(problems)}", _caller(1))
