"""The VM callbacks of ``struct c_arena_vm``, answered by a Python :class:`Backend`.

So that the C arena's OS calls go through the same backend (and, under a recording backend,
the same log and fences) as the Python arena's. An exception never crosses the C frames: it
waits in the bridge until the C call has returned, and :func:`raise_pending` raises it then.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable
from itertools import pairwise
from typing import NoReturn

from arenacheck.impl.backend import Backend
from arenacheck.impl.c_abi import RESERVE_FN, SPAN_FN, VmTable
from arenacheck.impl.errors import OSCallFailed

# What a callback returns when the backend raised something that carries no OS code.
CALLBACK_RAISED = -1


class BackendBridge:
    """A ``struct c_arena_vm`` whose functions call a :class:`Backend`.

    An exception cannot cross the C frames between a callback and the adapter, and ctypes
    would print and drop it, returning 0, which the arena would take for success. So each
    callback catches everything, keeps the exception in ``pending`` and returns a non-zero
    code (the errno of an ``OSCallFailed``, else ``CALLBACK_RAISED``); the adapter
    re-raises what is pending once the C call has returned.
    The bridge owns the ctypes thunks, so it must live as long as the native handle.
    """

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.pending: list[BaseException] = []
        self.table = VmTable(
            RESERVE_FN(self._reserve),
            SPAN_FN(self._commit),
            SPAN_FN(self._decommit),
            SPAN_FN(self._release),
        )

    def take(self) -> list[BaseException]:
        pending, self.pending = self.pending, []
        return pending

    def _failed(self, exc: BaseException) -> int:
        self.pending.append(exc)
        # The code as a C int would hold it (a Windows DWORD may not fit), and never 0:
        # that would read as success.
        code = ctypes.c_int(exc.code).value if isinstance(exc, OSCallFailed) else 0
        return code if code != 0 else CALLBACK_RAISED

    def _reserve(self, ctx: int | None, size: int, base: ctypes._Pointer[ctypes.c_uint64]) -> int:
        try:
            base[0] = self.backend.reserve(size)
        except BaseException as e:  # kept and re-raised by the adapter, see above
            return self._failed(e)
        return 0

    def _span(self, fn: Callable[[int, int], None], addr: int, size: int) -> int:
        try:
            fn(addr, size)
        except BaseException as e:  # kept and re-raised by the adapter, see above
            return self._failed(e)
        return 0

    def _commit(self, ctx: int | None, addr: int, size: int) -> int:
        return self._span(self.backend.commit, addr, size)

    def _decommit(self, ctx: int | None, addr: int, size: int) -> int:
        return self._span(self.backend.decommit, addr, size)

    def _release(self, ctx: int | None, addr: int, size: int) -> int:
        return self._span(self.backend.release, addr, size)


def memory_is_local(backend: Backend) -> bool:
    """Whether ``backend``'s reservations are mapped in this process, so that native code
    may touch them (the C arena writes its footer itself, and the adapter reads and writes
    with ctypes). A backend may say so in a ``memory_in_process`` attribute; otherwise one
    that keeps :class:`Backend`'s own in-process ``read`` and ``write`` is local, and a
    wrapper (an ``inner`` backend) is what it wraps. A backend that reads and writes some
    other way (over a pipe, into another process) is not: touching its addresses here would
    fault or, worse, hit an unrelated mapping of this process."""
    declared = getattr(backend, "memory_in_process", None)
    if isinstance(declared, bool):
        return declared
    inner = getattr(backend, "inner", None)
    if isinstance(inner, Backend):
        return memory_is_local(inner)
    kind = type(backend)
    return kind.read is Backend.read and kind.write is Backend.write


def raise_pending(pending: list[BaseException]) -> NoReturn:
    """Raise the last exception, chained to the earlier ones as Python itself would have
    chained them had each later call run while handling the earlier failure."""
    for earlier, later in pairwise(pending):
        if later.__context__ is None:
            later.__context__ = earlier
    raise pending[-1]
