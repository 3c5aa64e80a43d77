"""Where a backend may answer a call differently from the Windows model, and on what authority.

The Windows model predicts real Windows, and stays that way: it is never loosened to fit an
emulation. A backend that is not Windows (Wine) may differ from it in documented ways; each
such way is one row below, keyed by backend, naming the exact call and situation, what
Windows does (the model's prediction), what the backend does instead, and the fact of
VM_SEMANTICS.md that establishes both. The VM machine consults this table only when a
comparison has already failed, and accepts the difference only when a row of its own
backend matches the call, the prediction and the answer exactly; anything else fails.

Rows may only excuse a different error code for a call that fails on both sides, so an
excused call leaves the address space as the model has it and the run goes on comparing.
"""

from __future__ import annotations

from dataclasses import dataclass

from model.win_constants import (
    ERROR_INVALID_ADDRESS,
    ERROR_INVALID_PARAMETER,
    MEM_DECOMMIT,
    MEM_RELEASE,
)

# What the page at a call's (page-rounded) address is, in the model, just before the call.
# The VM machine only calls on free memory after the OS, too, has said it is free.
IN_FREE_MEMORY = "address in free memory"
IN_ALLOCATION = "address in an allocation"
NO_ADDRESS = "NULL address"
SITUATIONS = (IN_FREE_MEMORY, IN_ALLOCATION, NO_ADDRESS)


@dataclass(frozen=True)
class Answer:
    """A call's return value and last error (``None``: success, the last error not looked at)."""

    value: int
    error: int | None

    def __str__(self) -> str:
        return f"{self.value:#x}" + ("" if self.error is None else f" with error {self.error}")


@dataclass(frozen=True)
class Call:
    """One call as the VM machine made it, in the terms allowances are written in."""

    function: str
    situation: str
    arguments: tuple[tuple[str, int], ...]

    def argument(self, name: str) -> int | None:
        return dict(self.arguments).get(name)


@dataclass(frozen=True)
class Allowance:
    """One documented way in which ``backend`` answers differently from Windows."""

    backend: str
    name: str
    function: str
    situation: str
    # Each named argument must take one of the listed values; arguments not named are free.
    arguments: tuple[tuple[str, frozenset[int]], ...]
    windows: Answer
    instead: Answer
    description: str
    source: str

    def __post_init__(self) -> None:
        if self.situation not in SITUATIONS:
            raise ValueError(f"{self.name}: unknown situation {self.situation!r}")
        for side, answer in (("windows", self.windows), ("instead", self.instead)):
            if answer.value != 0 or answer.error is None:
                raise ValueError(f"{self.name}: {side} must be a failure with an error code")
        if self.windows == self.instead:
            raise ValueError(f"{self.name}: allows nothing (both sides answer {self.windows})")
        if not self.source.strip():
            raise ValueError(f"{self.name}: no source")

    def covers(self, backend: str, call: Call, predicted: Answer, answered: Answer) -> bool:
        if (backend, call.function, call.situation) != (
            self.backend,
            self.function,
            self.situation,
        ):
            return False
        for name, allowed in self.arguments:
            value = call.argument(name)
            if value is None or value not in allowed:
                return False
        return predicted == self.windows and answered == self.instead


ALLOWANCES: tuple[Allowance, ...] = (
    Allowance(
        backend="win32-wine",
        name="free of free memory: 87, not 487",
        function="VirtualFree",
        situation=IN_FREE_MEMORY,
        arguments=(("free_type", frozenset({MEM_RELEASE, MEM_DECOMMIT})),),
        windows=Answer(0, ERROR_INVALID_ADDRESS),
        instead=Answer(0, ERROR_INVALID_PARAMETER),
        description=(
            "VirtualFree with MEM_RELEASE or MEM_DECOMMIT at an address that no allocation "
            "holds (memory already released, or the unused rest of a 64 KiB block)"
        ),
        source=(
            "VM_SEMANTICS.md A.8: release or decommit of memory that was already released: "
            "87 under Wine, 487 on Windows [T]; A.2: MEM_RELEASE twice or on free memory, "
            "and MEM_DECOMMIT on free memory: 487 [T]"
        ),
    ),
)


def rows_for(backend: str) -> tuple[Allowance, ...]:
    return tuple(row for row in ALLOWANCES if row.backend == backend)


def allowance_for(
    backend: str, call: Call, predicted: Answer, answered: Answer
) -> Allowance | None:
    """The row of ``backend`` excusing ``answered`` where the model predicted ``predicted``."""
    return next((r for r in ALLOWANCES if r.covers(backend, call, predicted, answered)), None)
