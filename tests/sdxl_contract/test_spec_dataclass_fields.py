"""The typed specs and the CRDs name the same fields, with fitting Python types, for both kinds.

Defaults, bounds and allowed values are the CRDs' alone (from_dict applies them before a dataclass is
built); what the dataclasses add is each field's Python type. So this checks that every CRD field maps
to a dataclass field of a fitting type and back, and that a field is optional (``X | None = None``)
exactly when the CRD neither defaults nor requires it. A field added to a CRD fails here until it is
typed.
"""

from __future__ import annotations

import dataclasses
import typing
from typing import Any

import pytest

from sdxl_contract.deployment_spec import DeploymentSpec
from sdxl_contract.finetune_spec import FineTuneSpec
from sdxl_contract.schema import load_crd
from sdxl_contract.spec_building import crd_key

SPECS = {"SDXLFineTune": FineTuneSpec, "SDXLDeployment": DeploymentSpec}
_PYTHON_TYPES = {"boolean": bool, "integer": int, "number": float, "string": str}


def _unwrap_optional(tp: Any) -> tuple[Any, bool]:
    args = typing.get_args(tp)
    if type(None) in args:
        (inner,) = [arg for arg in args if arg is not type(None)]
        return inner, True
    return tp, False


def _fields(kind: str) -> list[tuple[str, dataclasses.Field[Any], Any, bool, dict[str, Any], dict[str, Any]]]:
    """(path, field, python type, optional, CRD property, parent schema) for every typed field."""
    out = []

    def walk(cls: type, schema: dict[str, Any], path: str) -> None:
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            key = crd_key(f)
            prop = schema.get("properties", {}).get(key)
            assert prop is not None, f"{path}{key}: typed, but the CRD does not declare it"
            tp, optional = _unwrap_optional(hints[f.name])
            out.append((path + key, f, tp, optional, prop, schema))
            if dataclasses.is_dataclass(tp):
                walk(tp, prop, f"{path}{key}.")

    walk(SPECS[kind], load_crd(kind).spec_schema, "")
    return out


def _crd_field_names(schema: dict[str, Any], path: str = "") -> set[str]:
    names: set[str] = set()
    for key, prop in schema.get("properties", {}).items():
        names.add(path + key)
        # Objects with declared fields are typed field by field; maps, a label selector and a pod
        # affinity (passed on to Kubernetes as they are) as a whole.
        if prop.get("type") == "object" and "properties" in prop and key not in ("fineTuneSelector", "affinity"):
            names |= _crd_field_names(prop, f"{path}{key}.")
    return names


@pytest.mark.parametrize("kind", sorted(SPECS))
def test_every_crd_field_is_typed_and_back(kind: str) -> None:
    assert {path for path, *_ in _fields(kind)} == _crd_field_names(load_crd(kind).spec_schema)


@pytest.mark.parametrize("kind", sorted(SPECS))
def test_optional_fields_are_those_the_crd_neither_defaults_nor_requires(kind: str) -> None:
    for path, f, _tp, optional, prop, parent in _fields(kind):
        crd_optional = "default" not in prop and crd_key(f) not in parent.get("required", [])
        assert optional == crd_optional, path
        if optional:
            assert f.default is None, f"{path}: an optional field defaults to None"
        else:
            assert f.default is dataclasses.MISSING, f"{path}: the default is the CRD's, not the dataclass's"


@pytest.mark.parametrize("kind", sorted(SPECS))
def test_python_types_fit_the_crd_types(kind: str) -> None:
    for path, _f, tp, _optional, prop, _parent in _fields(kind):
        crd_type = prop.get("type")
        if dataclasses.is_dataclass(tp):
            assert crd_type == "object", path
        elif crd_type == "array":
            assert typing.get_origin(tp) is list, path
        elif crd_type == "object":
            assert typing.get_origin(tp) is dict, path
        else:
            assert tp is _PYTHON_TYPES[crd_type], f"{path}: {tp} for CRD type {crd_type}"
