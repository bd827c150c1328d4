"""Frozen spec dataclasses built from a spec the CRD has defaulted and validated.

A spec dataclass declares each field's Python type only: its default, bounds and allowed values are
the CRD's (:mod:`sdxl_contract.schema`), so :func:`build_spec` first asks the CRD and then only
converts. The camelCase key of a field is derived from its snake_case name, so the two cannot drift
apart (a test maps every CRD field to a dataclass field and back).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from typing import Any, TypeVar

from sdxl_contract.field_error import FieldError
from sdxl_contract.schema import default_spec, spec_errors

T = TypeVar("T")


class InvalidSpec(ValueError):
    """The CRD refuses a spec: ``errors`` name each field; the message is the first (and a count)."""

    def __init__(self, errors: list[FieldError]) -> None:
        self.errors = errors
        more = ""
        if len(errors) > 1:
            more = f" (and {len(errors) - 1} more: {'; '.join(error.text for error in errors[1:3])})"
        super().__init__(f"{errors[0].text}{more}")

    @property
    def message(self) -> str:
        return str(self)


def camel(name: str) -> str:
    """``num_class_images`` -> ``numClassImages``."""
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def crd_key(field: dataclasses.Field[Any]) -> str:
    """The field's camelCase key in the CRD: derived from its name, or ``metadata={"crd_key": ...}``
    where the CRD spells an acronym in capitals (targetCPUUtilizationPercentage)."""
    key: str = field.metadata.get("crd_key") or camel(field.name)
    return key


def build_spec(cls: type[T], kind: str, data: object) -> T:
    """``cls`` from a user's (or a resolved) spec of ``kind``: validated and defaulted by the CRD."""
    if not isinstance(data, Mapping):
        raise InvalidSpec([FieldError("spec", "type", data, "object", node={"properties": {"": {}}})])
    errors = spec_errors(kind, dict(data))
    if errors:
        raise InvalidSpec(errors)
    return from_camel_dict(cls, default_spec(kind, dict(data)))


def from_camel_dict(cls: type[T], data: Mapping[str, Any]) -> T:
    """``cls`` from a camelCase mapping the CRD has already defaulted and validated."""
    assert dataclasses.is_dataclass(cls)
    hints = typing.get_type_hints(cls)
    values = {f.name: _convert(hints[f.name], data[crd_key(f)])
              for f in dataclasses.fields(cls) if data.get(crd_key(f)) is not None}
    result: T = cls(**values)
    return result


def _convert(tp: Any, value: Any) -> Any:
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        (tp,) = [arg for arg in typing.get_args(tp) if arg is not type(None)]
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return from_camel_dict(tp, value)
    origin = typing.get_origin(tp)
    if origin is list:
        (item_type,) = typing.get_args(tp)
        return [_convert(item_type, item) for item in value]
    if origin is dict:
        return dict(value)
    if tp is float:
        return float(value)  # a CRD number written as 1 is still a float to Python code
    if tp is int:
        return int(value)  # 500.0 from a JSON writer
    return value


def to_camel_dict(obj: Any, *, keep_unset: bool = True) -> Any:
    """A spec dataclass as the camelCase dict the spec uses.

    ``keep_unset=False`` leaves out optional fields that are unset, as the API server stores a spec
    (the operator's resolved spec); with it, they are written as null (training_args.json).
    """
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {crd_key(f): to_camel_dict(getattr(obj, f.name), keep_unset=keep_unset)
                for f in dataclasses.fields(obj) if keep_unset or getattr(obj, f.name) is not None}
    if isinstance(obj, list):
        return [to_camel_dict(item, keep_unset=keep_unset) for item in obj]
    if isinstance(obj, dict):
        return {key: to_camel_dict(value, keep_unset=keep_unset) for key, value in obj.items()}
    return obj
