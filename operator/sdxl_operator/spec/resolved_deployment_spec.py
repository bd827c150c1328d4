"""The resolved SDXLDeployment spec: what the compile workload reads from ``/etc/sdxl/spec.json``.

The user's spec with the CRD's defaults filled in (the typed
:class:`~sdxl_contract.deployment_spec.DeploymentSpec`; the
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

from sdxl_contract.deployment_spec import DeploymentSpec
from sdxl_contract.spec_building import to_camel_dict
from sdxl_operator.spec.model_source import ModelSource


def resolve_deployment_spec(
    spec: DeploymentSpec | Mapping[str, Any], source: ModelSource, *, name: str, namespace: str, uid: str
) -> dict[str, Any]:
    """A new dict: the validated ``spec`` (typed, or as stored) with defaults, the model source and metadata."""
    typed = spec if isinstance(spec, DeploymentSpec) else DeploymentSpec.from_dict(spec)
    resolved: dict[str, Any] = to_camel_dict(typed, keep_unset=False)
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
