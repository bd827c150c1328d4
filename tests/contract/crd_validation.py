"""Validate custom resources against our CRDs offline, the way the Kubernetes API server would.

There is no kube-apiserver in the test environment (KMock's emulator does no schema validation,
defaulting or CEL), so this module stands in for the apiserver's admission of a custom resource:

1. checks apiVersion / kind against the CRD and metadata.name as a DNS-1123 subdomain;
2. applies the schema's ``default`` values with the apiserver's structural defaulting algorithm
   (a defaulted object gets its own nested defaults, so ``training: {}`` fills every training field);
3. validates with ``jsonschema`` against the ``openAPIV3Schema`` converted from the OpenAPI 3.0
   subset Kubernetes uses (boolean ``exclusiveMinimum``, ``nullable``, ``x-kubernetes-*``; objects
   with ``properties`` reject unknown fields, as ``kubectl apply`` does with strict field validation);
4. if the schema passed, evaluates every ``x-kubernetes-validations`` CEL rule with ``cel-python``
   (``self`` bound to the value at the rule's node; transition rules that mention ``oldSelf`` run
   only when ``old`` is given and holds a value at the same path, as on an update).

Messages imitate the apiserver's wording (``spec.training.maxSteps: Invalid value: -5: ... should be
greater than or equal to 1``, ``Unsupported value``, ``Required value``, ``unknown field "..."``) so the
``# expect:`` lines of ``crds/examples/invalid/*.yaml`` read like what ``kubectl apply`` prints.

Known differences from a real apiserver: CEL rules use only standard CEL here (cel-python has no
Kubernetes extension libraries; our rules need none), ``type: number`` values written as integers
stay CEL ints, list correlation for transition rules follows object properties and maps only, rule
cost budgets are not estimated, and validation ratcheting (Kubernetes 1.30+ lets an update keep an
unchanged invalid value) is not modelled: an update is checked in full.

Use from other tests through the ``crd_validator`` fixture of ``tests/contract/conftest.py``::

    def test_status_patch_is_accepted(crd_validator):
        assert crd_validator(obj, "crds/sdxlfinetunes.sdxl.io.yaml") == []

or load this file by path (pytest runs with ``--import-mode=importlib``, so it is not importable by
module name): ``load_module()`` in ``tests/contract/conftest.py`` shows how.
"""

from __future__ import annotations

import copy
import datetime
import functools
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import celpy
import jsonschema
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
CRD_DIR = REPO_ROOT / "crds"

# metadata.name of a custom resource: a DNS-1123 subdomain (the apiserver's NameIsDNSSubdomain).
DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")
DNS1123_SUBDOMAIN_MESSAGE = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', "
    "and must start and end with an alphanumeric character"
)

# CEL `reason` -> the apiserver's field.ErrorType wording.
_CEL_REASON_WORDING = {
    "FieldValueRequired": "Required value",
    "FieldValueForbidden": "Forbidden",
    "FieldValueDuplicate": "Duplicate value",
}

_MISSING = object()


@dataclass(frozen=True)
class CelRule:
    """One x-kubernetes-validations entry, compiled."""

    rule: str
    message: str
    field_path: str
    reason: str
    program: Any
    is_transition: bool


@dataclass(frozen=True)
class LoadedCrd:
    """A CRD file with its version's schema prepared for validation."""

    path: Path
    group: str
    version: str
    kind: str
    schema: dict[str, Any]
    json_schema: dict[str, Any]
    rules: dict[int, list[CelRule]]  # id(schema node) -> compiled rules at that node


CRD_FILES = {
    "SDXLFineTune": CRD_DIR / "sdxlfinetunes.sdxl.io.yaml",
    "SDXLDeployment": CRD_DIR / "sdxldeployments.sdxl.io.yaml",
}


def crd_path_for_kind(kind: str) -> Path:
    """The CRD file that defines ``kind`` (SDXLFineTune or SDXLDeployment)."""
    if kind not in CRD_FILES:
        raise KeyError(f"no CRD defines kind {kind!r}; known kinds: {', '.join(CRD_FILES)}")
    return CRD_FILES[kind]


def load_crd_document(crd_path: str | Path) -> dict[str, Any]:
    """The CRD manifest as a dict (relative paths are taken from the repository root)."""
    path = _resolve(crd_path)
    with path.open(encoding="utf-8") as stream:
        document: dict[str, Any] = yaml.safe_load(stream)
    return document


def version_schema(crd: dict[str, Any], version: str | None = None) -> tuple[str, dict[str, Any]]:
    """(version name, openAPIV3Schema) of the given version, else of the storage version."""
    for entry in crd["spec"]["versions"]:
        if (version is None and entry.get("storage")) or entry["name"] == version:
            return entry["name"], entry["schema"]["openAPIV3Schema"]
    raise KeyError(f"{crd['metadata']['name']}: no version {version or '(storage)'}")


def load_crd(crd_path: str | Path) -> LoadedCrd:
    """Parse, convert and compile a CRD once per file version (cached on path and mtime)."""
    path = _resolve(crd_path)
    return _load_crd_cached(str(path), path.stat().st_mtime_ns)


@functools.lru_cache(maxsize=16)
def _load_crd_cached(path: str, _mtime_ns: int) -> LoadedCrd:
    crd = load_crd_document(path)
    version, schema = version_schema(crd)
    rules: dict[int, list[CelRule]] = {}
    environment = celpy.Environment()
    for node, _ in iter_schema_nodes(schema):
        compiled = [_compile_rule(environment, entry) for entry in node.get("x-kubernetes-validations", [])]
        if compiled:
            rules[id(node)] = compiled
    return LoadedCrd(
        path=Path(path),
        group=crd["spec"]["group"],
        version=version,
        kind=crd["spec"]["names"]["kind"],
        schema=schema,
        json_schema=openapi_to_jsonschema(schema),
        rules=rules,
    )


def _compile_rule(environment: celpy.Environment, entry: dict[str, Any]) -> CelRule:
    rule = entry["rule"]
    return CelRule(
        rule=rule,
        message=entry.get("message") or f"failed rule: {rule}",
        field_path=entry.get("fieldPath", ""),
        reason=entry.get("reason", "FieldValueInvalid"),
        program=environment.program(environment.compile(rule)),
        is_transition=re.search(r"\boldSelf\b", rule) is not None,
    )


def iter_schema_nodes(schema: dict[str, Any], path: str = "") -> Iterator[tuple[dict[str, Any], str]]:
    """Every schema node with a readable path: properties as ``.name``, ``[]`` for items, ``{}`` for map values."""
    yield schema, path or "<root>"
    for name, child in schema.get("properties", {}).items():
        yield from iter_schema_nodes(child, f"{path}.{name}")
    if isinstance(schema.get("items"), dict):
        yield from iter_schema_nodes(schema["items"], f"{path}[]")
    if isinstance(schema.get("additionalProperties"), dict):
        yield from iter_schema_nodes(schema["additionalProperties"], f"{path}{{}}")


def openapi_to_jsonschema(node: dict[str, Any]) -> dict[str, Any]:
    """Convert Kubernetes' OpenAPI 3.0 subset to a JSON Schema (draft 2020-12) with the same meaning."""
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key.startswith("x-kubernetes-") or key in ("nullable", "exclusiveMinimum", "exclusiveMaximum"):
            continue
        if key == "properties":
            out[key] = {name: openapi_to_jsonschema(child) for name, child in value.items()}
        elif key in ("items", "additionalProperties", "not") and isinstance(value, dict):
            out[key] = openapi_to_jsonschema(value)
        elif key in ("allOf", "anyOf", "oneOf"):
            out[key] = [openapi_to_jsonschema(child) for child in value]
        else:
            out[key] = copy.deepcopy(value)
    # OpenAPI 3.0: exclusiveMinimum/Maximum are booleans qualifying minimum/maximum.
    for bound, flag in (("minimum", "exclusiveMinimum"), ("maximum", "exclusiveMaximum")):
        if node.get(flag) is True and bound in node:
            out[flag] = out.pop(bound)
    if node.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if node.get("nullable") and "type" in out:
        out["type"] = [out["type"], "null"]
    # Structural schemas know every field: an undeclared one is pruned by the apiserver, and
    # rejected by `kubectl apply` (strict field validation). Report it.
    preserve = node.get("x-kubernetes-preserve-unknown-fields") is True
    if node.get("properties") and "additionalProperties" not in node and not preserve:
        out["additionalProperties"] = False
    return out


def apply_defaults(value: Any, schema: dict[str, Any]) -> Any:
    """A copy of ``value`` with schema defaults filled in, as the apiserver's structural defaulting does."""
    result = copy.deepcopy(value)
    _default_in_place(result, schema)
    return result


def _default_in_place(value: Any, schema: dict[str, Any]) -> None:
    if isinstance(value, dict):
        properties = schema.get("properties", {})
        for name, child in properties.items():
            if "default" not in child:
                continue
            if name not in value or (value[name] is None and not child.get("nullable")):
                value[name] = copy.deepcopy(child["default"])
        additional = schema.get("additionalProperties")
        for name, item in value.items():
            if name in properties:
                _default_in_place(item, properties[name])
            elif isinstance(additional, dict):
                _default_in_place(item, additional)
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for item in value:
            _default_in_place(item, schema["items"])


def apply_crd_defaults(obj: dict[str, Any], crd_path: str | Path) -> dict[str, Any]:
    """The object as the apiserver would store it: a copy with the CRD's defaults applied."""
    result: dict[str, Any] = apply_defaults(obj, load_crd(crd_path).schema)
    return result


def validate_against_crd(
    obj: dict[str, Any], crd_path: str | Path, old: dict[str, Any] | None = None
) -> list[str]:
    """Errors the apiserver would report for creating ``obj`` (or updating ``old`` to it); [] when valid.

    Defaults are applied to ``obj`` (and ``old``) first, as the apiserver does, so callers pass the
    manifest as a user writes it.
    """
    crd = load_crd(crd_path)
    errors = _identity_errors(obj, crd)
    defaulted = apply_defaults(obj, crd.schema)
    validator = jsonschema.Draft202012Validator(crd.json_schema, format_checker=_FORMAT_CHECKER)
    schema_errors = sorted(validator.iter_errors(defaulted), key=lambda e: [str(p) for p in e.absolute_path])
    for error in schema_errors:
        errors.extend(_format_schema_error(error))
    if schema_errors:
        # The apiserver evaluates CEL on values that match their schema; a rule on a wrongly typed
        # value would only add noise.
        return errors
    old_defaulted = apply_defaults(old, crd.schema) if old is not None else _MISSING
    errors.extend(_cel_errors(defaulted, crd.schema, old_defaulted, "", crd))
    return errors


# The formats our CRDs use, checked without jsonschema's optional format dependencies.
_FORMAT_CHECKER = jsonschema.FormatChecker(formats=())


@_FORMAT_CHECKER.checks("date-time", raises=ValueError)
def _is_rfc3339(value: object) -> bool:
    if not isinstance(value, str):
        return True  # the type check reports other types
    if not RFC3339.match(value):
        raise ValueError(f"{value!r} is not an RFC 3339 date-time")
    datetime.datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    return True


def _identity_errors(obj: dict[str, Any], crd: LoadedCrd) -> list[str]:
    errors = []
    api_version = f"{crd.group}/{crd.version}"
    if obj.get("apiVersion") != api_version:
        errors.append(f'apiVersion: Invalid value: {json.dumps(obj.get("apiVersion"))}: must be {api_version}')
    if obj.get("kind") != crd.kind:
        errors.append(f'kind: Invalid value: {json.dumps(obj.get("kind"))}: must be {crd.kind}')
    metadata = obj.get("metadata")
    name = metadata.get("name") if isinstance(metadata, dict) else None
    if not isinstance(name, str) or not name:
        errors.append("metadata.name: Required value: name or generateName is required")
    elif len(name) > 253 or not DNS1123_SUBDOMAIN.match(name):
        errors.append(f"metadata.name: Invalid value: {json.dumps(name)}: {DNS1123_SUBDOMAIN_MESSAGE}")
    return errors


def _json_path(parts: Any) -> str:
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "<root>"


def _quote(value: Any) -> str:
    return json.dumps(value) if isinstance(value, str) else json.dumps(value, default=str)


def _type_name(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return "null"


def _format_schema_error(error: jsonschema.ValidationError) -> list[str]:
    """The apiserver's wording for one jsonschema error (one line per unknown field)."""
    path = _json_path(error.absolute_path)
    value = error.instance
    schema = error.schema if isinstance(error.schema, dict) else {}
    keyword = error.validator
    bound = error.validator_value
    if keyword == "additionalProperties" and isinstance(value, dict):
        declared = set(schema.get("properties", {}))
        prefix = "" if path == "<root>" else f"{path}."
        return [f'unknown field "{prefix}{name}"' for name in sorted(set(value) - declared)]
    if keyword == "required":
        missing = [name for name in bound if name not in value]
        prefix = "" if path == "<root>" else f"{path}."
        return [f"{prefix}{name}: Required value" for name in missing]
    if keyword == "type":
        expected = bound if isinstance(bound, str) else bound[0]
        actual = _type_name(value)
        return [f'{path}: Invalid value: "{actual}": {path} in body must be of type {expected}: "{actual}"']
    if keyword == "enum":
        supported = ", ".join(_quote(option) for option in bound)
        return [f"{path}: Unsupported value: {_quote(value)}: supported values: {supported}"]
    wording = {
        "minimum": f"should be greater than or equal to {bound}",
        "exclusiveMinimum": f"should be greater than {bound}",
        "maximum": f"should be less than or equal to {bound}",
        "exclusiveMaximum": f"should be less than {bound}",
        "multipleOf": f"should be a multiple of {bound}",
        "minLength": f"should be at least {bound} chars long",
        "pattern": f"should match '{bound}'",
        "minItems": f"should have at least {bound} items",
        "format": f"must be of type {bound}",
    }
    if keyword in wording:
        return [f"{path}: Invalid value: {_quote(value)}: {path} in body {wording[keyword]}"]
    if keyword == "maxLength":
        return [f"{path}: Too long: may not be more than {bound} bytes"]
    if keyword in ("maxItems", "maxProperties"):
        return [f"{path}: Too many: {len(value)}: must have at most {bound} items"]
    return [f"{path}: Invalid value: {_quote(value)}: {error.message}"]


def _cel_errors(value: Any, schema: dict[str, Any], old: Any, path: str, crd: LoadedCrd) -> list[str]:
    errors = []
    for rule in crd.rules.get(id(schema), []):
        if rule.is_transition and old is _MISSING:
            continue
        if not _rule_holds(rule, value, old):
            where = f"{path}{rule.field_path}" if path else rule.field_path.lstrip(".") or "<root>"
            wording = _CEL_REASON_WORDING.get(rule.reason)
            if wording:
                errors.append(f"{where}: {wording}: {rule.message}")
            else:
                errors.append(f'{where}: Invalid value: "{_type_name(value)}": {rule.message}')
    if isinstance(value, dict):
        properties = schema.get("properties", {})
        additional = schema.get("additionalProperties")
        for name, item in value.items():
            child = properties.get(name, additional if isinstance(additional, dict) else None)
            if child is None:
                continue
            old_item = old.get(name, _MISSING) if isinstance(old, dict) else _MISSING
            errors.extend(_cel_errors(item, child, old_item, f"{path}.{name}" if path else name, crd))
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        # Lists are atomic in our schemas: the apiserver does not correlate their items with oldSelf.
        for index, item in enumerate(value):
            errors.extend(_cel_errors(item, schema["items"], _MISSING, f"{path}[{index}]", crd))
    return errors


def _rule_holds(rule: CelRule, value: Any, old: Any) -> bool:
    activation = {"self": celpy.json_to_cel(value)}
    if rule.is_transition:
        activation["oldSelf"] = celpy.json_to_cel(old)
    try:
        result = rule.program.evaluate(activation)
    except celpy.CELEvalError:
        return False
    # cel-python returns evaluation errors as values as well as raising them.
    return isinstance(result, celpy.celtypes.BoolType) and bool(result)


def _resolve(crd_path: str | Path) -> Path:
    path = Path(crd_path)
    return path if path.is_absolute() else REPO_ROOT / path
