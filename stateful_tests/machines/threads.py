"""Real OS threads on a pool, watched so that no run can hang: a watchdog and a backend that
threads can share.

Threads are watched through the pool's instrumented condition variable: when every live
thread is blocked in the pool with no wake-up pending, that is a deadlock, reported at once
with every thread's stack (faulthandler); anything else that stops making progress is
reported the same way after ``WATCHDOG_SECONDS``, and ``faulthandler.dump_traceback_later``
ends the process if even the watchdog is stuck.
"""

from __future__ import annotations

import faulthandler
import sys
import threading
from collections.abc import Callable
from typing import Any

from arenacheck.backends.registry import POSIX_NATIVE, WIN32_NATIVE, open_backend
from arenacheck.backends.wrapper import BackendWrapper
from arenacheck.impl.backend import Backend
from arenacheck.impl.pool import ArenaPool
from arenacheck.machines.pool_sync import RecordingCondition, thread_stacks

WATCHDOG_SECONDS = 30.0
SWITCH_INTERVAL_SECONDS = 2e-6
# Sleeps inside the pool's lock (see RecordingCondition), so that threads meet there.
JITTER_SECONDS = 2e-5
# Last resort if the watchdog itself hangs: print every stack and end the process, so a
# hang becomes a crashed (failed) test, never a run that does not end.
HARD_LIMIT_SECONDS = 120.0


class Deadlock(AssertionError):
    """Threads stopped making progress; the message carries every thread's stack."""


class LockedBackend(BackendWrapper):
    """Serialises every call. The kernel32 stand-in is a Python model and Wine's kernel32 is
    one server behind one pipe, neither thread-safe; the real kernels are, so the native
    backends run unlocked and their calls really overlap."""

    def __init__(self, inner: Backend) -> None:
        super().__init__(inner)
        self._lock = threading.Lock()

    def _call(self, method: str, *args: Any) -> Any:
        with self._lock:
            return super()._call(method, *args)


def thread_safe_backend(backend_name: str) -> Backend:
    backend = open_backend(backend_name)
    return backend if backend_name in (POSIX_NATIVE, WIN32_NATIVE) else LockedBackend(backend)


class ThreadRun:
    """Runs each target on its own OS thread and watches them through ``cond``.

    Invariant: ``finished`` counts threads whose target returned or raised; a thread that
    is neither finished nor inside ``cond.wait`` is running, so "every unfinished thread
    waits and no wake-up is pending" can only be a deadlock.
    """

    def __init__(
        self, pool: ArenaPool, cond: RecordingCondition, targets: list[Callable[[], None]]
    ) -> None:
        self.pool = pool
        self.cond = cond
        self.finished = 0
        self.errors: list[tuple[str, BaseException]] = []
        self._lock = threading.Lock()
        self.threads = [
            threading.Thread(target=self._wrap(fn), name=f"worker-{i}", daemon=True)
            for i, fn in enumerate(targets)
        ]
        # The GIL otherwise lets a thread run 5 ms before it must yield, long enough for a
        # get or an add to finish untouched: switching every few microseconds preempts
        # threads inside the pool's calls, which is where interleavings matter.
        self._interval = sys.getswitchinterval()
        sys.setswitchinterval(SWITCH_INTERVAL_SECONDS)
        for t in self.threads:
            t.start()

    def _wrap(self, fn: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                fn()
            except BaseException as e:  # reported by join, in the test's own thread
                self.errors.append((threading.current_thread().name, e))
            finally:
                with self._lock:
                    self.finished += 1
                self.cond.poke()

        return run

    def stuck(self) -> bool:
        """Evaluated with the pool's lock held, so the counts are consistent."""
        alive = len(self.threads) - self.finished
        return alive > 0 and self.cond.in_wait == alive and self.cond.pending == 0

    def join(self, limit: float = WATCHDOG_SECONDS) -> None:
        """Wait for every thread; a deadlock or a timeout raises Deadlock with all stacks."""
        faulthandler.dump_traceback_later(HARD_LIMIT_SECONDS, exit=True)
        try:
            settled = self.cond.wait_for_state(
                lambda: self.finished == len(self.threads) or self.stuck(), limit
            )
            if self.finished < len(self.threads):
                stacks = thread_stacks()
                why = (
                    f"deadlock: {self.cond.in_wait} threads wait in the pool with no wake-up "
                    f"pending, while the pool holds {self.pool.contents()}"
                    if settled
                    else f"no progress within {limit:.0f} s"
                )
                # A thread that failed holding an arena leaves the others waiting: its
                # error is the cause, and comes first.
                failed = "".join(f"{name} failed: {e!r}; then " for name, e in self.errors)
                # Closing wakes every waiter (PoolClosed), so the threads end.
                self.pool.close()
                for t in self.threads:
                    t.join(5.0)
                raise Deadlock(f"{failed}{why}; every thread's stack:\n{stacks}")
            for t in self.threads:
                t.join(5.0)
        finally:
            faulthandler.cancel_dump_traceback_later()
            sys.setswitchinterval(self._interval)
        if self.errors:
            name, error = self.errors[0]
            raise AssertionError(f"{name} failed: {error!r}") from error
