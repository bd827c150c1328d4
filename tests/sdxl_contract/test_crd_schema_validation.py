"""The CRD validator (sdxl_contract.schema) behaves like the API server on a small CRD.

The operator, the workloads and other tests trust its verdicts on our CRDs, so its defaulting, OpenAPI
semantics, CEL evaluation and error wording are checked here against a CRD written for the purpose.
"""

from __future__ import annotations

import os
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from sdxl_contract import schema

WIDGET_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "widgets.example.io"},
    "spec": {
        "group": "example.io",
        "scope": "Namespaced",
        "names": {"kind": "Widget", "plural": "widgets"},
        "versions": [{
            "name": "v1", "served": True, "storage": True,
            "schema": {"openAPIV3Schema": {
                "type": "object",
                "properties": {
                    "apiVersion": {"type": "string"}, "kind": {"type": "string"},
                    "metadata": {"type": "object"},
                    "spec": {
                        "type": "object",
                        "x-kubernetes-validations": [
                            {"rule": "self.size == oldSelf.size", "message": "size is immutable"},
                            {"rule": "!has(self.color) || self.color != 'red' || self.size > 1",
                             "message": "red widgets are bigger", "fieldPath": ".color",
                             "reason": "FieldValueForbidden"},
                        ],
                        "properties": {
                            "size": {"type": "integer", "default": 2, "minimum": 0, "exclusiveMinimum": True},
                            "ratio": {"type": "number", "maximum": 1, "exclusiveMaximum": True},
                            "color": {"type": "string", "nullable": True},
                            "when": {"type": "string", "format": "date-time"},
                            "port": {"x-kubernetes-int-or-string": True},
                            "inner": {
                                "type": "object", "default": {},
                                "properties": {"depth": {"type": "integer", "default": 3},
                                               "tags": {"type": "array", "items": {"type": "string"}}},
                            },
                            "labels": {"type": "object", "additionalProperties": {
                                "type": "object", "properties": {"weight": {"type": "integer", "default": 1}}}},
                            "parts": {"type": "array", "items": {
                                "type": "object", "required": ["name"],
                                "x-kubernetes-validations": [{"rule": "self.name != 'bad'", "message": "no bad parts"}],
                                "properties": {"name": {"type": "string"}, "count": {"type": "integer", "default": 1}},
                            }},
                            "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": True,
                                     "properties": {"known": {"type": "string"}}},
                        },
                    },
                },
            }},
        }],
    },
}


@pytest.fixture
def crd_validation() -> ModuleType:
    return schema


@pytest.fixture
def widget_crd(tmp_path: Path) -> Path:
    path = tmp_path / "widgets.example.io.yaml"
    path.write_text(yaml.safe_dump(WIDGET_CRD), encoding="utf-8")
    return path


def _widget(**spec: Any) -> dict[str, Any]:
    return {"apiVersion": "example.io/v1", "kind": "Widget", "metadata": {"name": "w"}, "spec": spec}


def test_defaults_fill_missing_fields_and_recurse_into_defaulted_objects(
    crd_validation: ModuleType, widget_crd: Path
) -> None:
    defaulted = crd_validation.apply_crd_defaults(
        _widget(labels={"a": {}}, parts=[{"name": "x"}, {"name": "y", "count": 5}]), widget_crd)
    assert defaulted["spec"]["size"] == 2
    assert defaulted["spec"]["inner"] == {"depth": 3}, "a defaulted object gets its own nested defaults"
    assert defaulted["spec"]["labels"] == {"a": {"weight": 1}}, "map values are defaulted"
    assert [p["count"] for p in defaulted["spec"]["parts"]] == [1, 5], "list items are defaulted, not overwritten"
    assert "ratio" not in defaulted["spec"] and "color" not in defaulted["spec"]


def test_defaults_replace_null_only_where_the_field_is_not_nullable(
    crd_validation: ModuleType, widget_crd: Path
) -> None:
    defaulted = crd_validation.apply_crd_defaults(_widget(size=None, color=None), widget_crd)
    assert defaulted["spec"]["size"] == 2
    assert defaulted["spec"]["color"] is None


def test_defaults_do_not_touch_the_callers_object(crd_validation: ModuleType, widget_crd: Path) -> None:
    obj = _widget()
    crd_validation.apply_crd_defaults(obj, widget_crd)
    assert obj == _widget()


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ({"size": 0}, ["spec.size: Invalid value: 0: spec.size in body should be greater than 0"]),
        ({"ratio": 1}, ["spec.ratio: Invalid value: 1: spec.ratio in body should be less than 1"]),
        ({"ratio": 0.5, "color": None, "port": "http"}, []),
        ({"port": 8080}, []),
        ({"when": "2026-11-26T12:00:00Z"}, []),
        ({"when": "2026-11-26T12:00:00.5+01:00"}, []),
        ({"when": "2026-11-26"},
         ['spec.when: Invalid value: "2026-11-26": spec.when in body must be of type date-time']),
        ({"when": "2026-13-26T12:00:00Z"},
         ['spec.when: Invalid value: "2026-13-26T12:00:00Z": spec.when in body must be of type date-time']),
        ({"port": 1.5},
         ['spec.port: Invalid value: "number": spec.port in body must be of type integer,string: "number"']),
        ({"inner": {"depht": 1}}, ['unknown field "spec.inner.depht"']),
        ({"free": {"known": "k", "anything": {"goes": 1}}}, []),
        ({"parts": [{"count": 2}]}, ["spec.parts[0].name: Required value"]),
        ({"inner": {"tags": ["a", 1]}},
         ['spec.inner.tags[1]: Invalid value: "integer": spec.inner.tags[1] in body must be of type string: "integer"']),
        ({"size": "big", "ratio": 2}, [
            "spec.ratio: Invalid value: 2: spec.ratio in body should be less than 1",
            'spec.size: Invalid value: "string": spec.size in body must be of type integer: "string"',
        ]),
    ],
)
def test_schema_errors_in_apiserver_wording(
    crd_validation: ModuleType, widget_crd: Path, spec: dict[str, Any], expected: list[str]
) -> None:
    assert crd_validation.validate_against_crd(_widget(**spec), widget_crd) == expected


def test_cel_rules_run_on_nested_list_items_with_field_path_and_reason(
    crd_validation: ModuleType, widget_crd: Path
) -> None:
    errors = crd_validation.validate_against_crd(
        _widget(size=1, color="red", parts=[{"name": "ok"}, {"name": "bad"}]), widget_crd)
    assert errors == [
        "spec.color: Forbidden: red widgets are bigger",
        'spec.parts[1]: Invalid value: "object": no bad parts',
    ]


def test_cel_rules_are_skipped_after_a_blocking_schema_error(crd_validation: ModuleType, widget_crd: Path) -> None:
    # As the API server's hasBlockingErr: a wrong type (or a missing required field, an unsupported
    # enum value, too long, too many) stops the rules; a bound does not.
    errors = crd_validation.validate_against_crd(_widget(size=1, color="red", ratio="high"), widget_crd)
    assert errors == ['spec.ratio: Invalid value: "string": spec.ratio in body must be of type number: "string"']
    errors = crd_validation.validate_against_crd(_widget(size=1, color="red", ratio=5), widget_crd)
    assert errors == ["spec.ratio: Invalid value: 5: spec.ratio in body should be less than 1",
                      "spec.color: Forbidden: red widgets are bigger"]


def test_transition_rules_run_only_on_update(crd_validation: ModuleType, widget_crd: Path) -> None:
    validate = crd_validation.validate_against_crd
    assert validate(_widget(size=5), widget_crd) == [], "a create has no oldSelf"
    assert validate(_widget(size=5), widget_crd, old=_widget(size=5)) == []
    assert validate(_widget(size=5), widget_crd, old=_widget(size=6)) == [
        'spec: Invalid value: "object": size is immutable']
    # The old object is defaulted too: size 2 written out equals the stored default.
    assert validate(_widget(size=2), widget_crd, old=_widget()) == []


def test_identity_of_the_object_is_checked(crd_validation: ModuleType, widget_crd: Path) -> None:
    obj = _widget()
    obj.update(apiVersion="example.io/v2", kind="Gadget", metadata={"name": "Bad_Name"})
    errors = crd_validation.validate_against_crd(obj, widget_crd)
    assert errors[0] == 'apiVersion: Invalid value: "example.io/v2": must be example.io/v1'
    assert errors[1] == 'kind: Invalid value: "Gadget": must be Widget'
    assert errors[2].startswith('metadata.name: Invalid value: "Bad_Name": a lowercase RFC 1123 subdomain')
    assert crd_validation.validate_against_crd({**_widget(), "metadata": {}}, widget_crd) == [
        "metadata.name: Required value: name or generateName is required"]


def test_openapi_meaning_of_exclusive_bounds_nullable_and_declared_fields(crd_validation: ModuleType) -> None:
    node = {
        "type": "object", "x-kubernetes-validations": [{"rule": "true"}],
        "properties": {"n": {"type": "integer", "minimum": 0, "exclusiveMinimum": True, "nullable": True}},
    }
    check = crd_validation.structural_errors
    assert check({"n": None}, node) == [] and check({"n": 1}, node) == []
    assert [e.api_text() for e in check({"n": 0}, node)] == ["n: Invalid value: 0: n in body should be greater than 0"]
    assert [e.api_text() for e in check({"m": 1}, node)] == ['unknown field "m"']
    assert [e.api_text() for e in check({"n": "1"}, node)] == [
        'n: Invalid value: "string": n in body must be of type integer: "string"']


def test_errors_read_for_a_person_name_the_field_and_the_limit(crd_validation: ModuleType, widget_crd: Path) -> None:
    errors = crd_validation.object_errors(_widget(size=0, inner={"depht": 1}), widget_crd)
    assert [e.text for e in errors] == [
        "spec.inner.depht: unknown field; did you mean depth?",
        "spec.size: must be > 0, got 0",
    ]


def test_crd_is_reloaded_when_its_file_changes(crd_validation: ModuleType, widget_crd: Path) -> None:
    assert crd_validation.validate_against_crd(_widget(size=7), widget_crd) == []
    changed = yaml.safe_load(widget_crd.read_text(encoding="utf-8"))
    changed["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["size"][
        "maximum"] = 5
    widget_crd.write_text(yaml.safe_dump(changed), encoding="utf-8")
    stat = widget_crd.stat()
    os.utime(widget_crd, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    assert crd_validation.validate_against_crd(_widget(size=7), widget_crd) == [
        "spec.size: Invalid value: 7: spec.size in body should be less than or equal to 5"]


def test_message_expression_words_the_error(crd_validation: ModuleType, tmp_path: Path) -> None:
    crd = yaml.safe_load(yaml.safe_dump(WIDGET_CRD))
    spec_schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    spec_schema["properties"]["size"]["x-kubernetes-validations"] = [
        {"rule": "self < 10", "messageExpression": "'size ' + string(self) + ' is 10 or more'"}]
    path = tmp_path / "widgets.example.io.yaml"
    path.write_text(yaml.safe_dump(crd), encoding="utf-8")
    errors = crd_validation.object_errors(_widget(size=12), path)
    assert [e.api_text() for e in errors] == ['spec.size: Invalid value: "integer": size 12 is 10 or more']
    assert [e.text for e in errors] == ["spec.size: size 12 is 10 or more, got 12"]
