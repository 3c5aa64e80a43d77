"""The one base of every backend wrapper: a backend in front of another.

Invariant: a wrapper answers every call of the Backend interface. What a subclass does not
define goes to ``inner`` through :meth:`BackendWrapper._call`, the interface's attributes
are copied from ``inner`` and its capabilities read through to it, so a wrapper keeps
working as the interface grows and a subclass changes only what it is about.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from arenacheck.impl.backend import Backend
from arenacheck.impl.win_kernel32 import Kernel32
from arenacheck.model.spans import OsSpan


class BackendWrapper(Backend):
    def __init__(self, inner: Backend) -> None:
        self.inner = inner
        for attr in Backend.__annotations__:
            if hasattr(inner, attr):
                setattr(self, attr, getattr(inner, attr))

    def _call(self, method: str, *args: Any) -> Any:
        """Every forwarded call passes here: a subclass may serialise or observe them all."""
        return getattr(self.inner, method)(*args)

    @property
    def kernel32(self) -> Kernel32 | None:
        return self.inner.kernel32

    # The interface's abstract methods, spelled out so that a type checker sees a concrete
    # class; the loop below forwards every other method the same way.
    def reserve(self, size: int) -> int:
        return int(self._call("reserve", size))

    def commit(self, addr: int, size: int) -> None:
        self._call("commit", addr, size)

    def decommit(self, addr: int, size: int) -> None:
        self._call("decommit", addr, size)

    def release(self, addr: int, size: int) -> None:
        self._call("release", addr, size)

    def query(self, lo: int, hi: int) -> list[OsSpan]:
        return list(self._call("query", lo, hi))


def _forwarder(method: str) -> Callable[..., Any]:
    def forward(self: BackendWrapper, *args: Any) -> Any:
        return self._call(method, *args)

    forward.__name__ = method
    return forward


for _method, _member in list(vars(Backend).items()):
    if callable(_member) and not _method.startswith("_") and _method not in vars(BackendWrapper):
        setattr(BackendWrapper, _method, _forwarder(_method))
