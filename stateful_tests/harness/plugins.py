"""Arena implementations named as ``MODULE:ATTRIBUTE``.

The attribute is either a factory ``(backend, geometry, min_align) -> arena`` or a class with
such a ``new`` classmethod (``impl.arena:Arena`` is the built-in arena).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

DEFAULT_IMPL = "arenacheck.impl.arena:Arena"

ArenaFactory = Callable[..., Any]


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
