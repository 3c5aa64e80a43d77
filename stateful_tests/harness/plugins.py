"""Arena implementations named as ``MODULE:ATTRIBUTE``.

The attribute is either a factory ``(backend, geometry, min_align) -> arena`` or a class with
such a ``new`` classmethod (``impl.arena:Arena`` is the built-in arena).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any, Protocol

from arenacheck.impl.backend import Backend
from arenacheck.model.geometry import Geometry

DEFAULT_IMPL = "arenacheck.impl.arena:Arena"


class ArenaLike(Protocol):
    """What the harness asks of an arena under test (``impl.arena.Arena`` is one).

    The addresses are docs/ARENA.md's R, C, S, P and F. ``start``, ``cursor``,
    ``committed_bytes`` and every method but ``free`` refuse a freed arena with
    ``UseAfterFree``; ``free`` refuses a second time with ``DoubleFree``; a bad layout is
    ``InvalidLayout``, an argument of the wrong type ``InvalidArgumentType``, a read or
    write outside ``[P, F)`` ``OutOfBounds``, and a refused OS call ``OSCallFailed``.
    """

    @property
    def reservation(self) -> int: ...

    @property
    def container(self) -> int: ...

    @property
    def start(self) -> int: ...

    @property
    def cursor(self) -> int: ...

    @property
    def footer(self) -> int: ...

    @property
    def committed_bytes(self) -> int: ...

    @property
    def alive(self) -> bool: ...

    def try_alloc(self, size: object, align: object = 1) -> int | None:
        """The address of ``size`` fresh bytes aligned on ``align``, or None when full."""
        ...

    def alloc(self, size: object, align: object = 1) -> int:
        """As ``try_alloc``, but a full arena raises ``ArenaFull``."""
        ...

    def reset(self) -> None: ...

    def free(self) -> None: ...

    def read(self, addr: object, n: object) -> bytes: ...

    def write(self, addr: object, data: object) -> None: ...


# ``(backend, geometry, min_align) -> arena``; ``impl.arena.Arena.new`` is the built-in one.
ArenaFactory = Callable[[Backend, Geometry, int], ArenaLike]


class PluginError(ValueError):
    """An implementation name that does not resolve to an arena factory."""


def load_factory(spec: str) -> ArenaFactory:
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise PluginError(f"arena implementation {spec!r} is not of the form MODULE:FACTORY")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise PluginError(f"arena implementation {spec!r}: cannot import {module_name}: {e}") from e
    obj: Any = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError as e:
            raise PluginError(f"arena implementation {spec!r}: no attribute {part!r}") from e
    if isinstance(obj, type):
        new = getattr(obj, "new", None)
        if not callable(new):
            raise PluginError(f"arena implementation {spec!r}: class without a new() classmethod")
        return new  # type: ignore[no-any-return]
    if not callable(obj):
        raise PluginError(f"arena implementation {spec!r} is not callable")
    return obj  # type: ignore[no-any-return]
