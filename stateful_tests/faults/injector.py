"""The one fault injector: an OS call that fails on purpose, before the OS sees it.

A :class:`Fault` names the call: the n-th, counting from 1, of the kinds it lists, made
after it was armed. FaultMachine fails the n-th call of any kind with a code it draws; the
pool machine and the thread tests fail the n-th creation of an arena with the OS's
out-of-memory code (:func:`creation_fault`).

Invariant: an armed fault fails exactly one call, then the injector is disarmed; every
other call, and every call of a kind the fault does not list, goes through unchanged.
``reserve_aligned`` is never failed: where the OS cannot place an aligned reservation it
answers None, which is not an error.
"""

from __future__ import annotations

from dataclasses import dataclass

from arenacheck.backends.wrapper import BackendWrapper
from arenacheck.impl.backend import Backend
from arenacheck.impl.errors import OSCallFailed
from arenacheck.model.arena import OsOp
from arenacheck.model.posix_constants import ENOMEM
from arenacheck.model.win_constants import ERROR_COMMITMENT_LIMIT

EVERY_CALL = frozenset(OsOp)
# Either way of obtaining an arena's range anywhere is one creation.
CREATIONS = frozenset({OsOp.RESERVE, OsOp.RESERVE_COMMITTED})


@dataclass(frozen=True)
class Fault:
    """The ``nth`` call among ``ops`` fails with ``code``; the error names the OS function
    ``call`` (the operation's own name when None), and its ``detail`` may name the call's
    ``{size}``."""

    nth: int
    code: int
    ops: frozenset[OsOp] = EVERY_CALL
    call: str | None = None
    detail: str = "injected fault"


class InjectedFault(OSCallFailed):
    """An OS call failed on purpose; the OS never saw it."""


def creation_fault(backend: Backend, nth: int) -> Fault:
    """The ``nth`` creation of an arena fails as the OS fails it when memory runs out:
    Windows' code where the calls go through a kernel32, else POSIX's."""
    windows = backend.kernel32 is not None
    call, code = ("VirtualAlloc", ERROR_COMMITMENT_LIMIT) if windows else ("mmap", ENOMEM)
    return Fault(nth, code, CREATIONS, call, "reserve {size:#x} bytes (injected)")


class FaultInjector(BackendWrapper):
    """Passes every call to ``inner``, except the one the armed :class:`Fault` names."""

    def __init__(self, inner: Backend) -> None:
        super().__init__(inner)
        self._fault: Fault | None = None
        self._seen = 0

    def arm(self, fault: Fault | None) -> None:
        """Count calls afresh from here; None disarms."""
        self._fault, self._seen = fault, 0

    def disarm(self) -> None:
        self._fault = None

    def _strike(self, op: OsOp, size: int) -> None:
        fault = self._fault
        if fault is None or op not in fault.ops:
            return
        self._seen += 1
        if self._seen < fault.nth:
            return
        self._fault = None
        raise InjectedFault(fault.call or op.value, fault.code, fault.detail.format(size=size))

    def reserve(self, size: int) -> int:
        self._strike(OsOp.RESERVE, size)
        return self.inner.reserve(size)

    def reserve_committed(self, size: int) -> int:
        self._strike(OsOp.RESERVE_COMMITTED, size)
        return self.inner.reserve_committed(size)

    def reserve_at(self, addr: int, size: int) -> bool:
        self._strike(OsOp.RESERVE_AT, size)
        return self.inner.reserve_at(addr, size)

    def commit(self, addr: int, size: int) -> None:
        self._strike(OsOp.COMMIT, size)
        self.inner.commit(addr, size)

    def decommit(self, addr: int, size: int) -> None:
        self._strike(OsOp.DECOMMIT, size)
        self.inner.decommit(addr, size)

    def release(self, addr: int, size: int) -> None:
        self._strike(OsOp.RELEASE, size)
        self.inner.release(addr, size)
