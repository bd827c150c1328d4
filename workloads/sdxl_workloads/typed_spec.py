"""Typed spec dataclasses from plain dicts, with errors that name the field.

A spec dataclass declares each field once: its Python type, its default and (through `rule()`)
its bounds or allowed values. `parse(cls, data, "spec")` then checks a camelCase dict against it:
unknown keys (with a "did you mean" hint), wrong types, out-of-range numbers and unknown enum
values each raise WorkloadError("InvalidInput", "spec.training.rank: must be ≥ 1, got 0"). The
camelCase key of a field is derived from its snake_case name, so the two cannot drift apart.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import types
import typing
from collections.abc import Mapping
from typing import Any, TypeVar

from sdxl_workloads.protocol import WorkloadError

T = TypeVar("T")

_RULE = "sdxl_rule"


@dataclasses.dataclass(frozen=True)
class Rule:
    """Constraints on one field beyond its type."""

    low: float | None = None  # smallest allowed value (numbers) or length (strings, lists)
    high: float | None = None  # largest allowed value or length
    low_exclusive: bool = False  # `low` itself is not allowed (e.g. learning rate > 0)
    choices: tuple[str, ...] | None = None  # allowed values of a string
    multiple_of: int | None = None  # integers only
    item_high: int | None = None  # lists/maps of strings: the longest allowed item
    pattern: str | None = None  # strings (and string items): a regular expression they must match
    why: str = ""  # appended to a bounds/multiple error, e.g. "(the VAE downsamples by 8)"


def rule(**constraints: Any) -> dict[str, Rule]:
    """Field metadata: `field(default=4, metadata=rule(low=1, high=256))`."""
    return {_RULE: Rule(**constraints)}


def camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def invalid(path: str, problem: str) -> WorkloadError:
    return WorkloadError("InvalidInput", f"{path}: {problem}")


def _suggestion(key: str, known: list[str]) -> str:
    # Users often write snake_case or the wrong case; compare in a normalised form first.
    normalised = {k.lower(): k for k in known}
    guess = normalised.get(camel(key).lower()) or normalised.get(key.replace("-", "").lower())
    if guess is None:
        close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
        guess = close[0] if close else None
    return f"; did you mean {guess}?" if guess else f"; known fields: {', '.join(known)}"


def parse(cls: type[T], data: Any, path: str) -> T:
    """Build dataclass `cls` from the camelCase mapping `data` at `path` (e.g. "spec.training")."""
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise invalid(path, f"must be a mapping of fields, got {_describe(data)}")
    assert dataclasses.is_dataclass(cls)
    hints = typing.get_type_hints(cls)
    fields = {camel(f.name): f for f in dataclasses.fields(cls)}
    for key in data:
        if key not in fields:
            raise invalid(f"{path}.{key}", "unknown field" + _suggestion(str(key), list(fields)))
    values: dict[str, Any] = {}
    for key, f in fields.items():
        field_path = f"{path}.{key}"
        if key not in data or (data[key] is None and _is_optional(hints[f.name])):
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                if _is_optional(hints[f.name]):
                    values[f.name] = None
                    continue
                raise invalid(field_path, "required field is missing")
            continue  # the dataclass default applies
        values[f.name] = _convert(hints[f.name], data[key], field_path, f.metadata.get(_RULE, Rule()))
    return cls(**values)


def _is_optional(tp: Any) -> bool:
    return _is_union(tp) and type(None) in typing.get_args(tp)


def _is_union(tp: Any) -> bool:
    return typing.get_origin(tp) in (typing.Union, types.UnionType)


def _describe(value: Any) -> str:
    kind = {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "a list",
            dict: "a mapping", type(None): "null"}.get(type(value), type(value).__name__)
    return f"{kind} ({value!r})" if not isinstance(value, (list, dict)) else kind


def _convert(tp: Any, value: Any, path: str, constraints: Rule) -> Any:
    if _is_union(tp):
        (inner,) = [arg for arg in typing.get_args(tp) if arg is not type(None)]
        return _convert(inner, value, path, constraints)
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return parse(tp, value, path)
    origin = typing.get_origin(tp)
    if origin is list:
        if not isinstance(value, list):
            raise invalid(path, f"must be a list, got {_describe(value)}")
        _check_length(len(value), path, constraints, "items")
        (item_type,) = typing.get_args(tp)
        # String items are never empty; `item_high` caps their length (e.g. prompts).
        item_rule = (Rule(low=1, high=constraints.item_high, pattern=constraints.pattern)
                     if item_type is str else Rule())
        return [_convert(item_type, item, f"{path}[{i}]", item_rule) for i, item in enumerate(value)]
    if origin is dict:
        if not isinstance(value, Mapping):
            raise invalid(path, f"must be a mapping, got {_describe(value)}")
        _check_length(len(value), path, constraints, "entries")
        _key_type, value_type = typing.get_args(tp)
        value_rule = Rule(high=constraints.item_high) if value_type is str else Rule()
        return {str(k): _convert(value_type, v, f"{path}.{k}", value_rule) for k, v in value.items()}
    if tp is Any:
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise invalid(path, f"must be true or false, got {_describe(value)}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                value = int(value)  # JSON writers sometimes emit 500.0
            else:
                raise invalid(path, f"must be an integer, got {_describe(value)}")
        _check_bounds(value, path, constraints)
        if constraints.multiple_of and value % constraints.multiple_of:
            raise invalid(path, f"must be a multiple of {constraints.multiple_of}{_why(constraints)}, got {value}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise invalid(path, f"must be a number, got {_describe(value)}")
        _check_bounds(float(value), path, constraints)
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise invalid(path, f"must be a string, got {_describe(value)}")
        if constraints.choices is not None:
            if value not in constraints.choices:
                hint = difflib.get_close_matches(value.lower(), constraints.choices, n=1)
                extra = f" (did you mean {hint[0]}?)" if hint else ""
                raise invalid(path, f"must be one of {', '.join(constraints.choices)}, got {value!r}{extra}")
            return value
        _check_length(len(value.strip()), path, constraints, "characters")
        if constraints.pattern is not None and not re.fullmatch(constraints.pattern, value):
            raise invalid(path, f"must match {constraints.pattern}{_why(constraints)}, got {value!r}")
        return value
    raise TypeError(f"unsupported spec field type {tp!r} at {path}")


def _why(constraints: Rule) -> str:
    return f" {constraints.why}" if constraints.why else ""


def _format(number: float) -> str:
    return f"{number:g}"


def _check_bounds(value: float, path: str, c: Rule) -> None:
    too_low = c.low is not None and (value <= c.low if c.low_exclusive else value < c.low)
    too_high = c.high is not None and value > c.high
    if not (too_low or too_high):
        return
    if c.low is not None and c.high is not None:
        lower = f"greater than {_format(c.low)}" if c.low_exclusive else f"between {_format(c.low)}"
        span = f"{lower} and at most {_format(c.high)}" if c.low_exclusive else f"{lower} and {_format(c.high)}"
        raise invalid(path, f"must be {span}{_why(c)}, got {_format(value)}")
    if c.low is not None:
        bound = f"> {_format(c.low)}" if c.low_exclusive else f"≥ {_format(c.low)}"
        raise invalid(path, f"must be {bound}{_why(c)}, got {_format(value)}")
    raise invalid(path, f"must be ≤ {_format(c.high or 0)}{_why(c)}, got {_format(value)}")


def _check_length(length: int, path: str, c: Rule, unit: str) -> None:
    if c.low is not None and length < c.low:
        if c.low == 1:
            raise invalid(path, "must not be empty")
        raise invalid(path, f"must have at least {_format(c.low)} {unit}, got {length}")
    if c.high is not None and length > c.high:
        raise invalid(path, f"must have at most {_format(c.high)} {unit}, got {length}")


def to_camel_dict(obj: Any) -> Any:
    """The dataclass as the camelCase dict the spec uses (for training_args.json and logs)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {camel(f.name): to_camel_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, list):
        return [to_camel_dict(item) for item in obj]
    if isinstance(obj, dict):
        return {key: to_camel_dict(value) for key, value in obj.items()}
    return obj
