"""The XCom boundary: a step's output is a frozen dataclass in Python and a JSON-able dict between tasks.

Airflow passes each output to the steps downstream as an XCom (JSON in its database, or the file a pod writes).
`dump` turns any output dataclass into that dict and `load` builds it back from the class's annotations, so an
output class needs no code of its own. JSON object keys are strings: a `dict[int, ...]` field (Kafka partitions)
travels with keys such as `"0"` and comes back with ints; a tuple travels as a list.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from typing import Any, Self, TypeVar

from sensorops.errors import UserError

T = TypeVar("T")


def dump(value: Any) -> Any:
    """A dataclass (nested ones too), dict, list or tuple as JSON-able values: dicts, lists and scalars."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: dump(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): dump(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [dump(v) for v in value]
    return value


def load(cls: type[T], data: Any) -> T:
    """The instance of the dataclass `cls` that `dump` turned into `data`; missing fields are an error."""
    return _build(cls, data)


def _build(kind: Any, value: Any) -> Any:
    """`value` (decoded JSON) as the annotated type `kind`."""
    if dataclasses.is_dataclass(kind):
        if not isinstance(value, Mapping):
            raise UserError(f"a {kind.__name__} is a JSON object, not {type(value).__name__}")
        fields = dataclasses.fields(kind)
        no_default = dataclasses.MISSING
        required = {f.name for f in fields if f.default is no_default and f.default_factory is no_default}
        missing = sorted(required - set(value))
        if missing:
            raise UserError(f"a {kind.__name__} needs {', '.join(missing)}")
        hints = typing.get_type_hints(kind)
        return kind(**{f.name: _build(hints[f.name], value[f.name]) for f in fields if f.name in value})
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if value is None or kind is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in args if a is not type(None)]
        return _build(inner[0], value) if len(inner) == 1 else value
    if origin is list:
        return [_build(args[0], v) for v in value]
    if origin is tuple:
        kinds = [args[0]] * len(value) if len(args) == 2 and args[1] is Ellipsis else args
        return tuple(_build(k, v) for k, v in zip(kinds, value, strict=True))
    if origin is dict:
        return {_key(args[0], k): _build(args[1], v) for k, v in value.items()}
    return value


def _key(kind: Any, key: str) -> Any:
    """A JSON object key as the dict's key type (partition numbers are ints in Python, strings in JSON)."""
    return int(key) if kind is int else key


class XCom:
    """Base of the step outputs: `to_xcom()` and `from_xcom(dict)`, both through `dump` and `load`."""

    def to_xcom(self) -> dict[str, Any]:
        """This output as the JSON-able dict Airflow stores."""
        return dump(self)

    @classmethod
    def from_xcom(cls, data: Mapping[str, Any]) -> Self:
        """The output that `to_xcom` gave `data`."""
        return load(cls, data)
