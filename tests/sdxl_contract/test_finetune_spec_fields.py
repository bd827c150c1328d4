"""The typed fine-tune spec and the SDXLFineTune CRD name the same fields, with matching Python types.

Defaults, bounds and allowed values are the CRD's alone (FineTuneSpec.from_dict applies them before a
dataclass is built); what the dataclasses add is each field's Python type, so this checks that every
CRD field maps to a dataclass field of a fitting type, and back.
"""

from __future__ import annotations

import dataclasses
import typing
from typing import Any

import pytest

from sdxl_contract.finetune_spec import FineTuneSpec
from sdxl_contract.schema import load_crd
from sdxl_contract.spec_building import camel


def _crd_spec_schema() -> dict[str, Any]:
    return load_crd("SDXLFineTune").spec_schema


def _fields(cls: type, schema: dict[str, Any], path: str):
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        key = camel(f.name)
        yield path + key, f, hints[f.name], schema["properties"].get(key)


def _all_fields():
    out = []

    def walk(cls: type, schema: dict[str, Any], path: str) -> None:
        for name, f, tp, prop in _fields(cls, schema, path):
            out.append((name, f, tp, prop))
            if dataclasses.is_dataclass(tp) and prop is not None:
                walk(tp, prop, name + ".")

    walk(FineTuneSpec, _crd_spec_schema(), "")
    return out


FIELDS = _all_fields()


def test_same_field_names() -> None:
    schema_names: set[str] = set()

    def walk(schema: dict[str, Any], path: str) -> None:
        for key, prop in schema.get("properties", {}).items():
            schema_names.add(path + key)
            if prop.get("type") == "object" and "properties" in prop and key != "tolerations":
                walk(prop, path + key + ".")

    walk(_crd_spec_schema(), "")
    assert {name for name, *_ in FIELDS} == schema_names


def test_optional_fields_are_those_the_crd_neither_defaults_nor_requires() -> None:
    def walk(cls: type, schema: dict[str, Any], path: str) -> None:
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            key = camel(f.name)
            prop = schema["properties"][key]
            optional = type(None) in typing.get_args(hints[f.name])
            assert optional == ("default" not in prop and key not in schema.get("required", [])), path + key
            if dataclasses.is_dataclass(hints[f.name]):
                walk(hints[f.name], prop, f"{path}{key}.")

    walk(FineTuneSpec, _crd_spec_schema(), "")


_PYTHON_TYPES = {"boolean": bool, "integer": int, "number": float, "string": str}


@pytest.mark.parametrize(("name", "f", "tp", "prop"), FIELDS, ids=[name for name, *_ in FIELDS])
def test_python_type_fits_the_crd_type(name: str, f: dataclasses.Field[Any], tp: Any, prop: dict[str, Any]) -> None:
    assert prop is not None, f"{name} is missing from the CRD"
    assert f.default in (None, dataclasses.MISSING), f"{name}: the default is the CRD's, not the dataclass's"
    inner = next((arg for arg in typing.get_args(tp) if arg is not type(None)), tp) if typing.get_args(tp) and \
        type(None) in typing.get_args(tp) else tp
    kind = prop["type"]
    if dataclasses.is_dataclass(inner):
        assert kind == "object" and prop.get("default") == {}, "nested objects default to {} so their fields' defaults apply"
    elif kind == "array":
        assert typing.get_origin(inner) is list
    elif kind == "object":
        assert typing.get_origin(inner) is dict
    else:
        assert inner is _PYTHON_TYPES[kind], f"{name}: {inner} for CRD type {kind}"
