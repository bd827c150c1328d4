"""The trainer's spec dataclasses and the SDXLFineTune CRD agree: names, defaults and limits.

The operator validates with the CRD; the trainer validates with the dataclasses (a user may run
it outside the cluster). A spec that one accepts and the other refuses would fail late and
confusingly, so every field's contract is compared here.
"""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path
from typing import Any

import pytest
import yaml

from sdxl_workloads.finetune_spec import FineTuneSpec
from sdxl_workloads.typed_spec import Rule, camel

CRD = Path(__file__).parents[2] / "crds" / "sdxlfinetunes.sdxl.io.yaml"


def _crd_spec_schema() -> dict[str, Any]:
    crd = yaml.safe_load(CRD.read_text())
    (version,) = [v for v in crd["spec"]["versions"] if v.get("storage")]
    return version["schema"]["openAPIV3Schema"]["properties"]["spec"]


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


def test_same_required_fields() -> None:
    required = {f"{camel(f.name)}" for f in dataclasses.fields(FineTuneSpec)
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING}
    assert required == set(_crd_spec_schema()["required"])


@pytest.mark.parametrize(("name", "f", "tp", "prop"), FIELDS, ids=[name for name, *_ in FIELDS])
def test_same_default_and_limits(name: str, f: dataclasses.Field, tp: Any, prop: dict[str, Any]) -> None:
    assert prop is not None, f"{name} is missing from the CRD"
    if dataclasses.is_dataclass(tp):
        assert prop.get("default") == {}, "nested objects default to {} so their fields' defaults apply"
        return
    default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
    if default is None or default is dataclasses.MISSING:
        assert "default" not in prop
    else:
        assert prop.get("default") == default
    r: Rule = f.metadata.get("sdxl_rule", Rule())
    kind = prop["type"]
    if kind == "boolean":
        assert tp is bool
    elif kind in ("integer", "number"):
        assert (prop.get("minimum"), prop.get("maximum")) == (r.low, r.high)
        assert bool(prop.get("exclusiveMinimum")) == r.low_exclusive
        assert prop.get("multipleOf") == r.multiple_of
    elif kind == "string" and "enum" in prop:
        assert tuple(prop["enum"]) == r.choices
    elif kind == "string":
        assert prop.get("maxLength") == r.high
        assert prop.get("minLength") == (r.low if r.low is not None else None)
        assert prop.get("pattern", "").strip("^$") == (r.pattern or "")
    elif kind == "array":
        assert (prop.get("minItems"), prop.get("maxItems")) == (r.low, r.high)
        items = prop["items"]
        if items["type"] == "string":
            assert items.get("maxLength") == r.item_high
            assert items.get("pattern", "").strip("^$") == (r.pattern or "")
    elif kind == "object":
        assert prop.get("maxProperties") == r.high
        assert prop["additionalProperties"].get("maxLength") == r.item_high
    else:
        pytest.fail(f"{name}: unexpected CRD type {kind}")
