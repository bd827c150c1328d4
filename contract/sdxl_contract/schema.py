"""Validate and default our custom resources against their CRDs, the way the Kubernetes API server does.

The CRDs (``crds/``, shipped in this package) are the one schema of SDXLFineTune and SDXLDeployment.
The operator validates again what the API server enforced (objects can reach it without that: an older
CRD, an emulator, a CRD installed without validation), and the workloads validate the spec file they
are given; both call this module, so all three agree by construction.

1. ``apiVersion``/``kind`` against the CRD and ``metadata.name`` as a DNS-1123 subdomain (whole objects);
2. the schema's ``default`` values (:mod:`structural_defaulting`);
3. types, enums, bounds, lengths, patterns, required and unknown fields (:mod:`structural_validation`);
4. the CEL rules (:mod:`cel_validation`), unless a structural error means the object lacks the shape
   the rules were written for (a wrong type, a missing required field, an unsupported enum value, too
   long or too many): the API server's ``hasBlockingErr``. A bound or pattern error does not block.

Errors are :class:`~sdxl_contract.field_error.FieldError`: ``.text`` for a person, ``.api_text()`` in
the API server's wording.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from sdxl_contract.cel_validation import MISSING, cel_errors
from sdxl_contract.crd_schema import (
    CRD_DIR,
    CRD_FILES,
    LoadedCrd,
    crd_path_for_kind,
    iter_schema_nodes,
    load_crd,
    load_crd_document,
    version_schema,
)
from sdxl_contract.field_error import FieldError
from sdxl_contract.structural_defaulting import apply_defaults
from sdxl_contract.structural_validation import structural_errors

__all__ = [
    "CRD_DIR",
    "CRD_FILES",
    "FieldError",
    "LoadedCrd",
    "apply_crd_defaults",
    "apply_defaults",
    "crd_path_for_kind",
    "default_spec",
    "iter_schema_nodes",
    "load_crd",
    "load_crd_document",
    "object_errors",
    "spec_errors",
    "structural_errors",
    "validate_against_crd",
    "version_schema",
]

# metadata.name of a custom resource: a DNS-1123 subdomain (the API server's NameIsDNSSubdomain).
DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
DNS1123_SUBDOMAIN_MESSAGE = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', "
    "and must start and end with an alphanumeric character"
)


def default_spec(kind: str, spec: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``spec`` with the CRD's defaults of ``kind`` filled in, as the API server stores it."""
    defaulted: dict[str, Any] = apply_defaults(spec, load_crd(kind).spec_schema)
    return defaulted


def spec_errors(kind: str, spec: Any, old: Any = MISSING) -> list[FieldError]:
    """What the API server would refuse in ``spec`` of a ``kind`` object (defaults applied first); [] if valid.

    Paths start with ``spec.``. Pass ``old`` (the stored spec) to run the rules of an update as well.
    """
    crd = load_crd(kind)
    schema = crd.spec_schema
    defaulted = apply_defaults(spec, schema)
    errors = structural_errors(defaulted, schema, "spec")
    if _blocks_rules(errors):
        return errors
    old_defaulted = apply_defaults(old, schema) if old is not MISSING else MISSING
    return errors + cel_errors(defaulted, schema, crd, "spec", old_defaulted)


def object_errors(obj: dict[str, Any], crd_path: str | Path, old: dict[str, Any] | None = None
                  ) -> list[FieldError]:
    """What the API server would refuse on creating ``obj`` (or updating ``old`` to it); [] when valid."""
    crd = load_crd(crd_path)
    errors = _identity_errors(obj, crd)
    defaulted = apply_defaults(obj, crd.schema)
    schema_errors = structural_errors(defaulted, crd.schema)
    errors.extend(schema_errors)
    if _blocks_rules(schema_errors):
        return errors
    old_defaulted = apply_defaults(old, crd.schema) if old is not None else MISSING
    errors.extend(cel_errors(defaulted, crd.schema, crd, "", old_defaulted))
    return errors


def validate_against_crd(obj: dict[str, Any], crd_path: str | Path, old: dict[str, Any] | None = None
                         ) -> list[str]:
    """:func:`object_errors` in the API server's wording (what ``kubectl apply`` prints)."""
    return [error.api_text() for error in object_errors(obj, crd_path, old)]


def apply_crd_defaults(obj: dict[str, Any], crd_path: str | Path) -> dict[str, Any]:
    """The whole object as the API server would store it: a copy with the CRD's defaults applied."""
    result: dict[str, Any] = apply_defaults(obj, load_crd(crd_path).schema)
    return result


# The structural errors after which the API server does not evaluate CEL rules (strategy.go's
# hasBlockingErr: NotSupported, Required, TooLong, TooMany, TypeInvalid): the value lacks the shape
# the rules were written for. An unknown field is pruned, so it blocks nothing either.
_BLOCKING_CHECKS = frozenset({"enum", "required", "maxLength", "maxItems", "maxProperties", "type"})


def _blocks_rules(errors: list[FieldError]) -> bool:
    return any(error.check in _BLOCKING_CHECKS for error in errors)


def _identity_errors(obj: dict[str, Any], crd: LoadedCrd) -> list[FieldError]:
    errors = []
    api_version = f"{crd.group}/{crd.version}"
    if obj.get("apiVersion") != api_version:
        errors.append(_identity("apiVersion", f'Invalid value: {json.dumps(obj.get("apiVersion"))}: must be {api_version}'))
    if obj.get("kind") != crd.kind:
        errors.append(_identity("kind", f'Invalid value: {json.dumps(obj.get("kind"))}: must be {crd.kind}'))
    metadata = obj.get("metadata")
    name = metadata.get("name") if isinstance(metadata, dict) else None
    if not isinstance(name, str) or not name:
        errors.append(_identity("metadata.name", "Required value: name or generateName is required"))
    elif len(name) > 253 or not DNS1123_SUBDOMAIN.match(name):
        errors.append(_identity("metadata.name", f"Invalid value: {json.dumps(name)}: {DNS1123_SUBDOMAIN_MESSAGE}"))
    return errors


def _identity(path: str, problem: str) -> FieldError:
    return FieldError(path, "identity", message=f"{path}: {problem}")
