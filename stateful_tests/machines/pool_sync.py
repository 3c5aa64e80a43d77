"""Watching threads inside a pool: a condition variable that counts its waiters and the
wake-ups it owes, and every thread's stack for when something hangs.

A machine or a test holding the condition's lock sees a consistent count, so "threads wait
and no wake-up is pending" is a lost wake-up or a deadlock, recognised without timing.
"""

from __future__ import annotations

import faulthandler
import random
import tempfile
import threading
import time
from collections.abc import Callable


def thread_stacks() -> str:
    """Every thread's stack, as faulthandler prints it."""
    with tempfile.TemporaryFile(mode="w+") as f:
        faulthandler.dump_traceback(f, all_threads=True)
        f.seek(0)
        return f.read()


class RecordingCondition(threading.Condition):
    """A condition variable that counts the threads inside ``wait`` and the wake-ups owed.

    ``in_wait`` and ``pending`` change only with the lock held, so an observer that holds
    the lock sees them consistent: ``pending == 0`` with threads waiting means nobody will
    wake them (CPython's Condition has no spurious wake-ups). Every change bumps a version
    that observers wait on, on a second lock, so observing never takes a wake-up away.
    """

    def __init__(self, jitter: float = 0.0, seed: int = 0) -> None:
        super().__init__(threading.RLock())
        self.in_wait = 0
        self.pending = 0
        self._observed = threading.Condition(threading.Lock())
        self._version = 0
        self._jitter = jitter
        self._rng = random.Random(seed)

    def __enter__(self) -> bool:
        entered = super().__enter__()
        # With jitter, half of the entries sleep up to ``jitter`` seconds holding the lock:
        # the GIL alone rarely switches threads inside a call this short, so without it
        # threads would seldom meet in the pool.
        if self._jitter and self._rng.random() < 0.5:
            time.sleep(self._jitter * self._rng.random())
        return entered

    def poke(self) -> None:
        """Tell observers that something they may wait for changed."""
        with self._observed:
            self._version += 1
            self._observed.notify_all()

    def wait(self, timeout: float | None = None) -> bool:
        self.in_wait += 1
        self.poke()
        notified = False
        try:
            notified = super().wait(timeout)
            return notified
        finally:
            self.in_wait -= 1
            if notified and self.pending:
                self.pending -= 1
            self.poke()

    def notify(self, n: int = 1) -> None:
        self.pending += max(0, min(n, self.in_wait - self.pending))
        super().notify(n)
        self.poke()

    def notify_all(self) -> None:
        self.notify(max(0, self.in_wait - self.pending))

    def quiet(self, waiting: int) -> bool:
        """Exactly ``waiting`` threads are blocked and none has a wake-up on its way."""
        return self.in_wait == waiting and self.pending == 0

    def wait_for_state(self, done: Callable[[], bool], timeout: float) -> bool:
        """Block until ``done()`` (evaluated with the lock held) is true; False on timeout."""
        deadline = time.monotonic() + timeout
        while True:
            with self._observed:
                version = self._version
            with self:
                if done():
                    return True
            with self._observed:
                while self._version == version:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        return False
                    self._observed.wait(remaining)
