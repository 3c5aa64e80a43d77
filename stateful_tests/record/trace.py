"""Step traces: what a machine did, as plain data that outlives Hypothesis.

Every rule of every machine is wrapped by :func:`traced`, which records the rule's name, its
arguments and the name of what it returned. Arguments are stored as JSON-able data: handles
(arenas, allocations, regions) by name, the boundary shapes (``SizeSpec``, ``Offset``,
``Length``) by their fields, so a trace replays without Hypothesis, on any backend, where the
OS hands out different addresses.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any, TypeVar

from arenacheck.machines.labels import RULES
from arenacheck.record import flight

F = TypeVar("F", bound=Callable[..., Any])
JSON = Any

# Dataclasses a trace may carry, by name; each must be constructible from its fields.
_SHAPES: dict[str, type] = {}


def shape(cls: type) -> type:
    """Register a frozen dataclass as a trace argument type."""
    _SHAPES[cls.__name__] = cls
    return cls


@dataclasses.dataclass
class Step:
    rule: str
    args: dict[str, JSON]
    result: str | None = None

    def as_json(self) -> dict[str, JSON]:
        return {"rule": self.rule, "args": self.args, "result": self.result}

    @classmethod
    def from_json(cls, data: dict[str, JSON]) -> Step:
        return cls(data["rule"], dict(data["args"]), data.get("result"))


def trace_name(value: object) -> str | None:
    name = getattr(value, "trace_name", None)
    return name if isinstance(name, str) else None


def to_data(value: object) -> JSON:
    name = trace_name(value)
    if name is not None:
        return {"ref": name}
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, tuple):
        return {"tuple": [to_data(v) for v in value]}
    if isinstance(value, bytes):
        return {"bytes": value.hex()}
    if dataclasses.is_dataclass(value) and type(value).__name__ in _SHAPES:
        fields = {f.name: to_data(getattr(value, f.name)) for f in dataclasses.fields(value)}
        return {"shape": type(value).__name__, "fields": fields}
    raise TypeError(f"a trace cannot record {type(value).__name__} {value!r}")


def from_data(data: JSON, refs: dict[str, object]) -> object:
    if isinstance(data, dict):
        if "ref" in data:
            return refs[data["ref"]]
        if "tuple" in data:
            return tuple(from_data(v, refs) for v in data["tuple"])
        if "bytes" in data:
            return bytes.fromhex(data["bytes"])
        if "shape" in data:
            cls = _SHAPES[data["shape"]]
            return cls(**{k: from_data(v, refs) for k, v in data["fields"].items()})
        raise ValueError(f"unknown trace value {data!r}")
    return data


def traced(fn: F) -> F:
    """Record each call of a rule in ``self.trace`` before running it, and in an xdist
    worker in its flight recorder too, so a crash inside the rule still names it."""

    @functools.wraps(fn)
    def wrapper(self: Any, **kwargs: Any) -> Any:
        step = Step(fn.__name__, {k: to_data(v) for k, v in kwargs.items()})
        RULES[fn.__name__] += 1
        trace = self.__dict__.setdefault("trace", [])
        trace.append(step)
        flight.record(self, trace)
        result = fn(self, **kwargs)
        step.result = trace_name(result)
        return result

    return wrapper  # type: ignore[return-value]
