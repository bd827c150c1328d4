"""The resolved SDXLDeployment spec: what the compile workload reads from ``/etc/sdxl/spec.json``.

The user's spec with the CRD's defaults filled in (:func:`sdxl_contract.schema.default_spec`; the
optional objects ``auth`` and ``autoscaling`` get their inner defaults only when given, as on the API
server), ``neuron`` filled in for Neuron only (the workloads refuse Neuron settings elsewhere; the CRD
cannot default an object on a sibling's value), and the model source made explicit: ``fineTune`` is
replaced by the fine-tune's ``lora`` and ``loraSha256`` (from its status) and its
``baseModel``/``baseModelRevision``, so the compile needs nothing but this file and its flags.
``metadata: {name, namespace, uid}`` traces the run back to its object. Pure.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sdxl_contract.schema import default_spec
from sdxl_operator.model_source import ModelSource


def resolve_deployment_spec(
    spec: Mapping[str, Any], source: ModelSource, *, name: str, namespace: str, uid: str
) -> dict[str, Any]:
    """A new dict: the validated ``spec`` with defaults, the model source and metadata."""
    resolved = default_spec("SDXLDeployment", {key: value for key, value in spec.items() if value is not None})
    if resolved["accelerator"] == "neuron" and "neuron" not in resolved:
        resolved = default_spec("SDXLDeployment", {**resolved, "neuron": {}})
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
