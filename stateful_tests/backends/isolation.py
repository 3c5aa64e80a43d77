"""Crash isolation: the implementation under test runs in a child process.

The child holds the backend (with the recording fence) and the arenas; the machine talks to
them through proxies over a pipe. If the child dies (a segfault, an abort), the proxy raises
``ChildCrashed`` naming the signal: an ordinary failing example, which Hypothesis shrinks
like any other, and the next example gets a fresh child. A signal handler could not do this:
after a wild write the process's own state cannot be trusted.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import signal
from typing import Any

from arenacheck.backends.recording import LoggedCall
from arenacheck.impl import host
from arenacheck.impl.errors import OSCallFailed
from arenacheck.model.spans import OsSpan

_TIMEOUT = 120.0
PROPERTIES = frozenset(
    {"reservation", "container", "start", "cursor", "footer", "committed_bytes", "alive"}
)


class ChildCrashed(AssertionError):
    """The process running the implementation died; ``signal`` names what killed it."""

    def __init__(self, message: str, signal_name: str = "") -> None:
        super().__init__(message)
        self.signal_name = signal_name


# What a Windows process that died of an unhandled exception exits with: the exception's
# NTSTATUS, which stands where POSIX would name a signal.
NTSTATUS_NAMES = {
    0xC0000005: "STATUS_ACCESS_VIOLATION",
    0xC000001D: "STATUS_ILLEGAL_INSTRUCTION",
    0xC00000FD: "STATUS_STACK_OVERFLOW",
    0xC0000409: "STATUS_STACK_BUFFER_OVERRUN",
    0x80000003: "STATUS_BREAKPOINT",
}


def death_of(code: int | None) -> tuple[str, str]:
    """The name of what killed a child (a signal, or on Windows an NTSTATUS), and a phrase."""
    if code is not None and code < 0:
        name = signal.Signals(-code).name
        return name, f"signal {name}"
    if host.IS_WINDOWS and code is not None and (code & 0xFFFFFFFF) in NTSTATUS_NAMES:
        name = NTSTATUS_NAMES[code & 0xFFFFFFFF]
        return name, f"{name} ({code & 0xFFFFFFFF:#x})"
    return "", f"exit status {code}"


def _serve(conn: Any, backend_name: str, commit_limit: int | None) -> None:
    """The child: builds the backend, then executes requests until told to stop."""
    import faulthandler

    # The crash is reported by the parent, with its signal; a forked copy of pytest's
    # fault handler would only print the parent's stack.
    faulthandler.disable()
    from arenacheck.backends.recording import RecordingBackend
    from arenacheck.backends.registry import WIN32_EMULATED, open_backend, standin_installed
    from arenacheck.backends.standin import EmulatedKernel32
    from arenacheck.harness.plugins import load_factory
    from arenacheck.impl.win_backend import WindowsBackend
    from arenacheck.model.geometry import geometry_named

    with standin_installed() if backend_name == WIN32_EMULATED else contextlib.nullcontext():
        if commit_limit is None:
            inner = open_backend(backend_name)
        else:
            inner = WindowsBackend(EmulatedKernel32(commit_limit=commit_limit), backend_name)
        rec = RecordingBackend(inner)
        arenas: dict[int, Any] = {}
        conn.send(("ok", (rec.name, rec.page, rec.granularity), [], {}, False))
        while True:
            request = conn.recv()
            kind = request[0]
            if kind == "stop":
                return
            try:
                if kind == "new":
                    _, spec, geometry_name, min_align = request
                    geometry = geometry_named(geometry_name, rec.page, rec.granularity)
                    arena = load_factory(spec)(rec, geometry, min_align)
                    arenas[len(arenas)] = arena
                    result: Any = (len(arenas) - 1, arena.reservation)
                elif kind == "call":
                    _, number, name, args = request
                    result = getattr(arenas[number], name)(*args)
                elif kind == "get":
                    result = getattr(arenas[request[1]], request[2])
                elif kind == "backend":
                    _, name, args = request
                    result = getattr(rec, name)(*args)
                elif kind == "reset":
                    result = rec.release_leftovers()
                    arenas.clear()
                    rec.fence_tripped = False
                else:
                    raise ValueError(f"unknown request {kind!r}")
                status = "ok"
            except BaseException as error:  # every failure goes back to the machine
                status, result = "raise", error
            conn.send((status, result, rec.take_log(), dict(rec.live), rec.fence_tripped))


class IsolatedBackend:
    """The machine's view of a backend living in a child process.

    It mirrors what the machine reads of a RecordingBackend (``log``, ``live``,
    ``fence_tripped``) from every reply, and forwards queries and memory access.
    """

    inner: Any = None

    def __init__(self, backend_name: str, commit_limit: int | None) -> None:
        method = "fork" if host.IS_LINUX else "spawn"
        ctx: Any = multiprocessing.get_context(method)
        self._conn, child_conn = ctx.Pipe()
        self._proc = ctx.Process(
            target=_serve, args=(child_conn, backend_name, commit_limit), daemon=True
        )
        self._proc.start()
        child_conn.close()
        self.log: list[LoggedCall] = []
        self.live: dict[int, int] = {}
        self.fence_tripped = False
        self.name, self.page, self.granularity = self._receive()

    @property
    def alive(self) -> bool:
        return bool(self._proc.is_alive())

    def _receive(self) -> Any:
        try:
            if not self._conn.poll(_TIMEOUT):
                self._proc.kill()
                raise ChildCrashed(f"the implementation's process did not answer in {_TIMEOUT} s")
            status, result, log, live, tripped = self._conn.recv()
        except (EOFError, ConnectionError, OSError):
            self._proc.join(timeout=10)
            name, how = death_of(self._proc.exitcode)
            raise ChildCrashed(f"the implementation's process died with {how}", name) from None
        self.log.extend(log)
        self.live = live
        self.fence_tripped = tripped
        if status == "raise":
            raise result
        return result

    def request(self, *message: Any) -> Any:
        # If the child is gone, the reply (or its absence) tells what happened.
        with contextlib.suppress(BrokenPipeError, ConnectionError, OSError):
            self._conn.send(message)
        return self._receive()

    # ----------------------------------------------- what the machine calls on a backend

    def calls(self) -> list[Any]:
        return [entry.call for entry in self.log]

    def take_log(self) -> list[LoggedCall]:
        log, self.log = self.log, []
        return log

    def query(self, lo: int, hi: int) -> list[OsSpan]:
        spans: list[OsSpan] = self.request("backend", "query", (lo, hi))
        return spans

    def read(self, addr: int, n: int) -> bytes:
        data: bytes = self.request("backend", "read", (addr, n))
        return data

    def write(self, addr: int, data: bytes) -> None:
        self.request("backend", "write", (addr, data))

    def arm(self, after: int, code: int) -> None:
        self.request("backend", "arm", (after, code))

    def adopt(self, base: int, size: int) -> None:
        self.request("backend", "adopt", (base, size))

    def disown(self, base: int, size: int) -> None:
        self.request("backend", "disown", (base, size))

    def release_leftovers(self) -> list[tuple[int, int]]:
        if not self.alive:
            return []
        leaked: list[tuple[int, int]] = self.request("reset")
        return leaked

    def new_arena(self, spec: str, geometry_name: str, min_align: int) -> RemoteArena:
        number, reservation = self.request("new", spec, geometry_name, min_align)
        return RemoteArena(self, number, reservation)

    def stop(self) -> None:
        if self.alive:
            with contextlib.suppress(Exception):
                self._conn.send(("stop",))
            self._proc.join(timeout=10)
        if self._proc.is_alive():
            self._proc.kill()


class RemoteArena:
    """An arena in the child: methods and properties are forwarded; errors come back typed."""

    def __init__(self, backend: IsolatedBackend, number: int, reservation: int) -> None:
        self._backend = backend
        self._number = number
        self.reservation = reservation

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        if name in PROPERTIES:
            return self._backend.request("get", self._number, name)

        def method(*args: Any) -> Any:
            return self._backend.request("call", self._number, name, args)

        return method


_CHILDREN: dict[tuple[str, int | None], IsolatedBackend] = {}


def child_backend(backend_name: str, commit_limit: int | None) -> IsolatedBackend:
    """The child for this configuration, started afresh when the last one died."""
    key = (backend_name, commit_limit)
    child = _CHILDREN.get(key)
    if child is None or not child.alive:
        child = IsolatedBackend(backend_name, commit_limit)
        _CHILDREN[key] = child
    child.log.clear()
    return child


__all__ = ["ChildCrashed", "IsolatedBackend", "OSCallFailed", "RemoteArena", "child_backend"]
