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

    The footer's content is the implementation's choice; one that reports it with an
    optional ``footer_bytes() -> bytes`` (:class:`ReportsFooter`) has it compared with the
    memory at F right after creation.
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


class ReportsFooter(Protocol):
    """The optional part of the contract: what the arena chose to write at F."""

    def footer_bytes(self) -> bytes: ...


def reported_footer(arena: object) -> object:
    """``arena.footer_bytes()`` (bytes, unless the arena breaks the contract), or None for
    an implementation that does not report it.

    A proxy for an arena in a child process offers every name, and the child answers an
    AttributeError naming the method when its arena has none: that too means "not reported".
    """
    method = getattr(arena, "footer_bytes", None)
    if not callable(method):
        return None
    try:
        report: object = method()
    except AttributeError as error:
        if "'footer_bytes'" in str(error):
            return None
        raise
    return report


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


# The attribute an implementation sets to say that it reads or writes its memory itself
# (native code, ctypes), not only through its backend.
TOUCHES_MEMORY_ITSELF = "touches_memory_itself"
# The attribute an implementation sets to say that it makes its OS calls itself (a native
# library's own mmap or VirtualAlloc), not through its backend.
MAKES_OS_CALLS_ITSELF = "makes_os_calls_itself"


def _declared(obj: object, attribute: str) -> bool | None:
    declared = getattr(obj, attribute, None)
    return declared if isinstance(declared, bool) else None


def declares(spec: str, attribute: str) -> bool:
    """What the implementation ``spec`` names declares in ``attribute`` (False if nothing):
    on the factory itself, on what a bound factory is bound to (a class's ``new``
    classmethod: the class), or on the class its return annotation names. Loading the
    factory runs no OS call; it is never called."""
    from typing import get_type_hints

    factory = load_factory(spec)
    candidates: list[object] = [factory, getattr(factory, "__self__", None)]
    try:
        returned = get_type_hints(factory).get("return")
    except Exception:  # an annotation that does not resolve says nothing either way
        returned = None
    if isinstance(returned, type):
        candidates.append(returned)
    for candidate in candidates:
        declared = None if candidate is None else _declared(candidate, attribute)
        if declared is not None:
            return declared
    return False


def runs_isolated_by_default(spec: str) -> bool:
    """Whether the implementation ``spec`` names runs in a child process unless told
    otherwise: when it declares ``touches_memory_itself = True``. A wild store of such code
    kills its process, which only a child process can survive."""
    return declares(spec, TOUCHES_MEMORY_ITSELF)


def makes_os_calls_itself(spec: str) -> bool:
    """Whether the implementation ``spec`` names declares ``makes_os_calls_itself = True``:
    its OS calls bypass the backend, and a machine sees them only through the OS's view."""
    return declares(spec, MAKES_OS_CALLS_ITSELF)
