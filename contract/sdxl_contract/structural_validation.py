"""The structural part of a CRD's schema: types, enums, bounds, lengths, patterns, required and unknown fields.

Kubernetes' OpenAPI 3.0 subset as the API server checks it: boolean ``exclusiveMinimum`` /
``exclusiveMaximum`` qualify ``minimum`` / ``maximum``, ``nullable`` admits ``null``,
``x-kubernetes-int-or-string`` admits either, ``x-kubernetes-preserve-unknown-fields`` keeps what the
schema does not declare. An object with ``properties`` refuses undeclared fields, as ``kubectl apply``
does with strict field validation (the API server would prune them silently: a typo would be lost).
"""

from __future__ import annotations

import datetime
import re
from typing import Any

from sdxl_contract.field_error import FieldError

RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")


def structural_errors(value: Any, schema: dict[str, Any], path: str = "") -> list[FieldError]:
    """Every structural problem of ``value`` (already defaulted) against ``schema``, ordered by path."""
    errors: list[FieldError] = []
    _check(value, schema, path, (), errors)
    return sorted(errors, key=lambda error: error.sort_key)


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _check(value: Any, node: dict[str, Any], path: str, key: tuple[str, ...], errors: list[FieldError]) -> None:
    where = path or "<root>"

    def fail(check: str, bound: Any = None) -> None:
        errors.append(FieldError(where, check, value, bound, node=node, sort_key=key))

    if value is None:
        if not node.get("nullable") and ("type" in node or node.get("x-kubernetes-int-or-string")):
            fail("type", "integer,string" if node.get("x-kubernetes-int-or-string") else node["type"])
        return
    if node.get("x-kubernetes-int-or-string"):
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            fail("type", "integer,string")
            return
    elif "type" in node and not _has_type(value, node["type"]):
        fail("type", node["type"])
        return
    if "enum" in node and value not in node["enum"]:
        fail("enum", node["enum"])
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        _check_number(value, node, fail)
    elif isinstance(value, str):
        _check_string(value, node, fail)
    elif isinstance(value, list):
        if "minItems" in node and len(value) < node["minItems"]:
            fail("minItems", node["minItems"])
        if "maxItems" in node and len(value) > node["maxItems"]:
            fail("maxItems", node["maxItems"])
        if isinstance(node.get("items"), dict):
            for index, item in enumerate(value):
                _check(item, node["items"], f"{where}[{index}]", (*key, str(index)), errors)
    elif isinstance(value, dict):
        _check_object(value, node, path, key, errors, fail)


def _check_object(value: dict[str, Any], node: dict[str, Any], path: str, key: tuple[str, ...],
                  errors: list[FieldError], fail: Any) -> None:
    properties: dict[str, Any] = node.get("properties", {})
    additional = node.get("additionalProperties")
    if "maxProperties" in node and len(value) > node["maxProperties"]:
        fail("maxProperties", node["maxProperties"])
    for name in node.get("required", []):
        if name not in value:
            errors.append(FieldError(_join(path, name), "required", node=node, sort_key=key))
    preserve = node.get("x-kubernetes-preserve-unknown-fields") is True
    for name in sorted(value, key=str):
        item = value[name]
        child = properties.get(name)
        if child is None and isinstance(additional, dict):
            child = additional
        if child is not None:
            _check(item, child, _join(path, str(name)), (*key, str(name)), errors)
        elif properties and additional is None and not preserve:
            errors.append(FieldError(_join(path, str(name)), "unknown", name, tuple(properties), node=node,
                                     sort_key=key))


def _has_type(value: Any, expected: str) -> bool:
    if expected == "integer":
        # kube-openapi accepts an integral float (JSON writers emit 500.0) as an integer.
        integral_float = isinstance(value, float) and value.is_integer()
        return integral_float or (isinstance(value, int) and not isinstance(value, bool))
    if expected == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    python_type = {"string": str, "boolean": bool, "array": list, "object": dict}.get(expected)
    return python_type is None or isinstance(value, python_type)


def _check_number(value: float, node: dict[str, Any], fail: Any) -> None:
    if "minimum" in node:
        if node.get("exclusiveMinimum") is True:
            if value <= node["minimum"]:
                fail("exclusiveMinimum", node["minimum"])
        elif value < node["minimum"]:
            fail("minimum", node["minimum"])
    if "maximum" in node:
        if node.get("exclusiveMaximum") is True:
            if value >= node["maximum"]:
                fail("exclusiveMaximum", node["maximum"])
        elif value > node["maximum"]:
            fail("maximum", node["maximum"])
    if "multipleOf" in node and value % node["multipleOf"]:
        fail("multipleOf", node["multipleOf"])


def _check_string(value: str, node: dict[str, Any], fail: Any) -> None:
    if "minLength" in node and len(value) < node["minLength"]:
        fail("minLength", node["minLength"])
    if "maxLength" in node and len(value) > node["maxLength"]:
        fail("maxLength", node["maxLength"])
    if "pattern" in node and not re.search(node["pattern"], value):
        fail("pattern", node["pattern"])
    if node.get("format") == "date-time" and not _is_rfc3339(value):
        fail("format", "date-time")


def _is_rfc3339(value: str) -> bool:
    if not RFC3339.match(value):
        return False
    try:
        datetime.datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return False
    return True
