"""The resolved spec: what the trainer reads from ``/etc/sdxl/spec.json``.

The user's spec with every default filled in (from :data:`finetune_validation.FIELDS`, the same
defaults as the CRD), ``output`` defaulted to ``<artifactStore>/finetunes/<namespace>/<name>/<uid8>``
(the uid part keeps a re-created fine-tune of the same name from overwriting the old artifacts), and
``metadata: {name, namespace, uid}`` so the run can be traced back to its object. Optional fields
without a default (``vae``, ``classPrompt``, ``priorPreservation.classImages``) stay absent.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from sdxl_operator.finetune_validation import FIELDS, Rule, Schema


def default_output(artifact_store: str, namespace: str, name: str, uid: str) -> str:
    """``<artifactStore>/finetunes/<namespace>/<name>/<uid8>``."""
    return f"{artifact_store.rstrip('/')}/finetunes/{namespace}/{name}/{uid[:8]}"


def resolve_finetune_spec(
    spec: Mapping[str, Any],
    *,
    name: str,
    namespace: str,
    uid: str,
    artifact_store: str,
) -> dict[str, Any]:
    """A new dict: ``spec`` with defaults applied, output resolved, and metadata added. Pure."""
    resolved = with_defaults(spec, FIELDS)
    if not resolved.get("output"):
        resolved["output"] = default_output(artifact_store, namespace, name, uid)
    resolved["metadata"] = {"name": name, "namespace": namespace, "uid": uid}
    return resolved


def with_defaults(value: Mapping[str, Any], schema: Schema) -> dict[str, Any]:
    """A new dict: ``value`` with the defaults of a field table filled in (nested objects created)."""
    result: dict[str, Any] = {key: copy.deepcopy(item) for key, item in value.items() if item is not None}
    for key, rule in schema.items():
        if isinstance(rule, Rule):
            if key not in result and rule.default is not None:
                result[key] = copy.deepcopy(rule.default)
        else:
            nested = result.get(key)
            result[key] = with_defaults(nested if isinstance(nested, Mapping) else {}, rule)
    return result
