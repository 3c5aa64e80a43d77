"""A backend wrapper that logs every OS call and fences off calls that could hurt others.

The log lets the harness compare the calls an arena made with the calls the model
predicts, call for call. The fence refuses, before the OS sees it, any commit, decommit
or release that reaches outside a reservation this wrapper handed out and that is still
live: such a call could change or destroy another mapping in the process (a released
range may already belong to someone else). It refuses as well, before memory is touched,
a read or write that reaches outside what the calls made through it have committed
read-write: touching such memory kills the process (uncommitted) or corrupts someone
else's (outside the reservations).

Invariants: ``live`` holds exactly the reservations made through this wrapper (or adopted:
mapped by the implementation's own calls, and seen mapped by the OS) and not yet released
or disowned; ``committed`` exactly the pages of them that its successful commits (and
committed reservations) made read-write and no later decommit or release took back, or,
in an adopted reservation, that the OS showed committed read-write when last adopted.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from arenacheck.backends.wrapper import BackendWrapper
from arenacheck.faults.injector import Fault, FaultInjector, InjectedFault
from arenacheck.impl.backend import Backend
from arenacheck.impl.errors import OSCallFailed
from arenacheck.model.arena import OsCall, OsOp
from arenacheck.model.arith import round_down, round_up
from arenacheck.model.intervals import IntervalMap
from arenacheck.model.spans import OsSpan, SpanState


class FenceViolation(AssertionError):
    """The implementation tried an OS call outside its own live reservations."""


@dataclass(frozen=True)
class LoggedCall:
    call: OsCall
    error: int | None = None
    result: int | None = None
    injected: bool = False


class RecordingBackend(BackendWrapper):
    """Logs every call it makes for the implementation and fences off the dangerous ones.

    Its calls reach ``inner`` through a :class:`FaultInjector`, so that ``arm`` can fail
    any of them before the OS sees it; the log marks such a call ``injected``. With
    ``keep_release_views`` it also keeps, for each reservation it released, the OS's view
    of the range taken right after the release, before anything else in the process (a
    thread's stack, the Python heap) can be mapped there.
    """

    def __init__(self, inner: Backend, keep_release_views: bool = False) -> None:
        super().__init__(inner)
        self.faults = FaultInjector(inner)
        self.log: list[LoggedCall] = []
        self.live: dict[int, int] = {}
        self.committed: IntervalMap[bool] = IntervalMap()
        self.fence_tripped = False
        self.release_views: dict[int, list[OsSpan]] = {}
        self._keep_release_views = keep_release_views

    def arm(self, after: int, code: int) -> None:
        """Make the OS call after ``after`` more calls fail with ``code``, without the OS."""
        self.faults.arm(Fault(after + 1, code))

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

    def _pages(self, addr: int, size: int) -> tuple[int, int]:
        """The pages a call on ``[addr, addr + size)`` acts on: both kernels round so."""
        return round_down(addr, self.page), round_up(addr + size, self.page)

    def _touchable(self, what: str, addr: object, n: object) -> None:
        """Refuse, before memory is touched, an access outside committed read-write memory."""
        if type(addr) is not int or type(n) is not int or n < 0:
            self.fence_tripped = True
            raise FenceViolation(
                f"{what}({addr!r}, {n!r}): an address and a length must be non-negative ints; "
                "memory was not touched"
            )
        if n == 0 or self.committed.covers(addr, addr + n):
            return
        self.fence_tripped = True
        runs = ", ".join(f"[{r.start:#x}, {r.end:#x})" for r in self.committed)
        raise FenceViolation(
            f"{what}({addr:#x}, {n:#x}) reaches outside the memory this implementation's calls "
            f"committed read-write ({runs or 'none'}); memory was not touched"
        )

    def _failed(self, call: OsCall, error: OSCallFailed) -> None:
        self.log.append(LoggedCall(call, error.code, injected=isinstance(error, InjectedFault)))

    def _run(self, call: OsCall, fn: Callable[[int, int], None], addr: int, size: int) -> None:
        try:
            fn(addr, size)
        except OSCallFailed as e:
            self._failed(call, e)
            raise
        self.log.append(LoggedCall(call))

    def _reserve(self, op: OsOp, size: int, fn: Callable[[int], int]) -> int:
        call = OsCall(op, None, size)
        try:
            base = fn(size)
        except OSCallFailed as e:
            self._failed(call, e)
            raise
        self.log.append(LoggedCall(call, result=base))
        self.live[base] = size
        if op is OsOp.RESERVE_COMMITTED:
            self.committed.set(base, base + size, True)
        return base

    def reserve(self, size: int) -> int:
        return self._reserve(OsOp.RESERVE, size, self.faults.reserve)

    def reserve_committed(self, size: int) -> int:
        return self._reserve(OsOp.RESERVE_COMMITTED, size, self.faults.reserve_committed)

    def commit(self, addr: int, size: int) -> None:
        call = OsCall(OsOp.COMMIT, addr, size)
        self._fenced(call)
        self._run(call, self.faults.commit, addr, size)
        self.committed.set(*self._pages(addr, size), True)

    def decommit(self, addr: int, size: int) -> None:
        call = OsCall(OsOp.DECOMMIT, addr, size)
        self._fenced(call)
        self._run(call, self.faults.decommit, addr, size)
        self.committed.set(*self._pages(addr, size), None)

    def release(self, addr: int, size: int) -> None:
        call = OsCall(OsOp.RELEASE, addr, size)
        self._fenced(call)
        self._run(call, self.faults.release, addr, size)
        if self._keep_release_views:
            self.release_views[addr] = self.inner.query(addr, addr + size)
        self._forget(addr, addr + size)
        self.committed.set(*self._pages(addr, size), None)

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
        try:
            ok = self.faults.reserve_at(addr, size)
        except InjectedFault as e:  # the OS itself answers a taken range with False
            self._failed(call, e)
            raise
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
        self._touchable("read", addr, n)
        return self.inner.read(addr, n)

    def write(self, addr: int, data: bytes) -> None:
        self._touchable("write", addr, len(data))
        self.inner.write(addr, data)

    def adopt(self, base: int, size: int) -> None:
        """Take ``[base, base + size)``, which the implementation mapped with its own calls
        (a native arena's mmap or VirtualAlloc), as one of its live reservations, with
        exactly what the OS now shows committed read-write in it open to reads and writes:
        the fence follows the OS's view, never the implementation's word. Refused when the
        OS shows any of the range unmapped: it is no reservation then.
        """
        view = self.inner.query(base, base + size)
        unmapped = [s for s in view if s.state is SpanState.FREE]
        if unmapped or not view:
            self.fence_tripped = True
            raise FenceViolation(
                f"[{base:#x}, {base + size:#x}) is not all mapped (free: "
                + ", ".join(f"[{s.start:#x}, {s.end:#x})" for s in unmapped)
                + "); it cannot be the implementation's reservation"
            )
        self.live[base] = size
        self.committed.set(base, base + size, None)
        for span in view:
            if span.state is SpanState.COMMITTED and "w" in span.prot:
                self.committed.set(span.start, span.end, True)

    def disown(self, base: int, size: int) -> None:
        """Forget an adopted reservation that the implementation released with its own calls:
        from now on the range may belong to anyone, and neither teardown nor a read may
        touch it."""
        self._forget(base, base + size)
        self.committed.set(base, base + size, None)

    def release_leftovers(self) -> list[tuple[int, int]]:
        """Release every reservation still live (a leak), returning what was leaked."""
        leaked = sorted(self.live.items())
        for base, size in leaked:
            self.inner.release(base, size)
        self.live.clear()
        self.committed = IntervalMap()
        return leaked
