"""Structural defaulting, as the API server applies a CRD's ``default`` values before validating.

A missing field gets its schema default; a defaulted object then gets its own nested defaults (so
``training: {}`` fills every training field); map values and list items are defaulted in place. A
``null`` in a field that is not ``nullable`` is pruned first, and defaulted if a default exists, as
the API server does since Kubernetes 1.20.
"""

from __future__ import annotations

import copy
from typing import Any


def apply_defaults(value: Any, schema: dict[str, Any]) -> Any:
    """A copy of ``value`` with the schema's defaults filled in; ``value`` itself is not touched."""
    result = copy.deepcopy(value)
    _default_in_place(result, schema)
    return result


def _default_in_place(value: Any, schema: dict[str, Any]) -> None:
    if isinstance(value, dict):
        properties = schema.get("properties", {})
        for name, child in properties.items():
            if name in value and value[name] is None and not child.get("nullable"):
                del value[name]
            if name not in value and "default" in child:
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
