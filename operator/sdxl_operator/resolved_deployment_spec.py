"""The resolved SDXLDeployment spec: what the compile workload reads from ``/etc/sdxl/spec.json``.

The user's spec with the CRD defaults filled in (:data:`deployment_validation.FIELDS`), ``neuron``
filled in for Neuron only (the workloads refuse Neuron settings elsewhere), and the model source made
explicit: ``fineTune`` is replaced by the fine-tune's ``lora`` and ``loraSha256`` (from its status)
and its ``baseModel``/``baseModelRevision``, so the compile needs nothing but this file and its flags.
``metadata: {name, namespace, uid}`` traces the run back to its object. Pure.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sdxl_operator.deployment_validation import FIELDS, NEURON_FIELDS, OPTIONAL_OBJECTS
from sdxl_operator.model_source import ModelSource
from sdxl_operator.resolved_spec import with_defaults


def resolve_deployment_spec(
    spec: Mapping[str, Any], source: ModelSource, *, name: str, namespace: str, uid: str
) -> dict[str, Any]:
    """A new dict: the validated ``spec`` with defaults, the model source and metadata."""
    plain_fields = {key: rule for key, rule in FIELDS.items() if key not in OPTIONAL_OBJECTS}
    resolved = with_defaults({k: v for k, v in spec.items() if k not in OPTIONAL_OBJECTS}, plain_fields)
    if resolved["accelerator"] == "neuron":
        resolved["neuron"] = with_defaults(spec.get("neuron") or {}, NEURON_FIELDS)
    for key in ("auth", "autoscaling"):
        if spec.get(key) is not None:
            rules = FIELDS[key]
            assert isinstance(rules, Mapping)  # an object's field table, not a leaf rule
            resolved[key] = with_defaults(spec[key], rules)
    resolved.pop("fineTune", None)
    resolved["lora"] = source.lora
    if source.lora_sha256:
        resolved["loraSha256"] = source.lora_sha256
    else:
        resolved.pop("loraSha256", None)
    resolved["baseModel"] = source.base_model
    resolved["baseModelRevision"] = source.base_revision
    resolved["metadata"] = {"name": name, "namespace": namespace, "uid": uid}
    return resolved
