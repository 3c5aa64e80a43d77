"""A backend wrapper that logs every OS call and fences off calls that could hurt others.

The log lets the harness compare the calls an arena made with the calls the model
predicts, call for call. The fence refuses, before the OS sees it, any commit, decommit
or release that reaches outside a reservation this wrapper handed out and that is still
live: such a call could change or destroy another mapping in the process (a released
range may already belong to someone else).

Invariant: ``live`` holds exactly the reservations made through this wrapper and not yet
released through it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from arenacheck.impl.backend import Backend, OsSpan
from arenacheck.impl.errors import OSCallFailed
from arenacheck.model.arena import OsCall, OsOp


class FenceViolation(AssertionError):
    """The implementation tried an OS call outside its own live reservations."""


@dataclass(frozen=True)
class LoggedCall:
    call: OsCall
    error: int | None = None
    result: int | None = None
    injected: bool = False


class RecordingBackend(Backend):
    def __init__(self, inner: Backend) -> None:
        self.inner = inner
        self.name = inner.name
        self.page = inner.page
        self.granularity = inner.granularity
        self.partial_release = inner.partial_release
        self.log: list[LoggedCall] = []
        self.live: dict[int, int] = {}
        self.fence_tripped = False
        self._armed: list[int] | None = None

    def arm(self, after: int, code: int) -> None:
        """Make the OS call after ``after`` more calls fail with ``code``, without the OS."""
        self._armed = [after, code]

    @property
    def armed(self) -> bool:
        return self._armed is not None

    def _inject(self, call: OsCall) -> None:
        if self._armed is None:
            return
        if self._armed[0] > 0:
            self._armed[0] -= 1
            return
        code = self._armed[1]
        self._armed = None
        self.log.append(LoggedCall(call, code, injected=True))
        raise OSCallFailed(call.op.value, code, "injected fault")

    def calls(self) -> list[OsCall]:
        return [entry.call for entry in self.log]

    def take_log(self) -> list[LoggedCall]:
        log, self.log = self.log, []
        return log

    def _inside_live(self, addr: int, size: int) -> bool:
        return any(base <= addr and addr + size <= base + n for base, n in self.live.items())

    def _fenced(self, call: OsCall) -> None:
        assert call.addr is not None
        if not self._inside_live(call.addr, call.size):
            self.log.append(LoggedCall(call, None))
            self.fence_tripped = True
            live = ", ".join(f"[{b:#x}, {b + n:#x})" for b, n in sorted(self.live.items()))
            raise FenceViolation(
                f"{call} reaches outside the live reservations ({live or 'none'}); "
                "the call was not made"
            )

    def _run(self, call: OsCall, fn: object, *args: int) -> None:
        self._inject(call)
        try:
            fn(*args)  # type: ignore[operator]
        except OSCallFailed as e:
            self.log.append(LoggedCall(call, e.code))
            raise
        self.log.append(LoggedCall(call))

    def _reserve(self, op: OsOp, size: int, fn: Callable[[int], int]) -> int:
        call = OsCall(op, None, size)
        self._inject(call)
        try:
            base = fn(size)
        except OSCallFailed as e:
            self.log.append(LoggedCall(call, e.code))
            raise
        self.log.append(LoggedCall(call, result=base))
        self.live[base] = size
        return base

    def reserve(self, size: int) -> int:
        return self._reserve(OsOp.RESERVE, size, self.inner.reserve)

    def reserve_committed(self, size: int) -> int:
        return self._reserve(OsOp.RESERVE_COMMITTED, size, self.inner.reserve_committed)

    def commit(self, addr: int, size: int) -> None:
        call = OsCall(OsOp.COMMIT, addr, size)
        self._fenced(call)
        self._run(call, self.inner.commit, addr, size)

    def decommit(self, addr: int, size: int) -> None:
        call = OsCall(OsOp.DECOMMIT, addr, size)
        self._fenced(call)
        self._run(call, self.inner.decommit, addr, size)

    def release(self, addr: int, size: int) -> None:
        call = OsCall(OsOp.RELEASE, addr, size)
        self._fenced(call)
        self._run(call, self.inner.release, addr, size)
        self._forget(addr, addr + size)

    def _forget(self, lo: int, hi: int) -> None:
        """Take ``[lo, hi)`` out of the live reservations, keeping what is left of each."""
        for base, n in list(self.live.items()):
            end = base + n
            if end <= lo or base >= hi:
                continue
            del self.live[base]
            if base < lo:
                self.live[base] = lo - base
            if hi < end:
                self.live[hi] = end - hi

    def reserve_at(self, addr: int, size: int) -> bool:
        """Logged with error -1 when the range was taken (the OS call made no change)."""
        call = OsCall(OsOp.RESERVE_AT, addr, size)
        self._inject(call)
        ok = self.inner.reserve_at(addr, size)
        self.log.append(LoggedCall(call, None if ok else -1, addr if ok else None))
        if ok:
            self.live[addr] = size
        return ok

    def reserve_aligned(self, size: int, align: int) -> int | None:
        base = self.inner.reserve_aligned(size, align)
        if base is not None:
            self.log.append(LoggedCall(OsCall(OsOp.RESERVE, None, size), result=base))
            self.live[base] = size
        return base

    def query(self, lo: int, hi: int) -> list[OsSpan]:
        # Read afresh every time: an implementation may change its memory without going
        # through this recorder (a native arena's own mmap), and a stale view would lie.
        return self.inner.query(lo, hi)

    def read(self, addr: int, n: int) -> bytes:
        return self.inner.read(addr, n)

    def write(self, addr: int, data: bytes) -> None:
        self.inner.write(addr, data)

    def release_leftovers(self) -> list[tuple[int, int]]:
        """Release every reservation still live (a leak), returning what was leaked."""
        leaked = sorted(self.live.items())
        for base, size in leaked:
            self.inner.release(base, size)
        self.live.clear()
        return leaked
