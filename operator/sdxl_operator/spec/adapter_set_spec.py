"""The spec side of an SDXLDeployment that serves a set of fine-tunes: its checks, resolved spec and key.

* :func:`adapter_set_spec_errors`: the CRD's rules (:func:`deployment_validation.validate_deployment_spec`
  evaluates its schema and CEL), plus what the API server enforces outside CEL (``fineTunes`` is a
  ``list-type: set``: each name once), plus a guard that never lets a set run on Neuron, whatever
  admitted the spec (an API server without CEL, such as the sandbox's emulator): Failed /
  InvalidSpec with the CRD's own message.
* :func:`resolve_adapter_set_spec`: the resolved spec (defaults filled in as for one model) with
  ``adapters: {resident, maxRank}`` and without a LoRA: the pods load the base model and read the
  adapters from a ConfigMap (:mod:`adapters_configmap`) that is deliberately not part of the spec.
* :func:`adapter_set_key`: what the server pods of a set run (base model, revision, accelerator,
  image), in the place a compile key takes for one model (pod annotations, ``status.compileKey``):
  nothing is compiled, and the set of adapters is not in it, so a fine-tune joining never rolls the pods.
Pure.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from sdxl_operator.core.accelerators import image_for
from sdxl_operator.core.settings import OperatorSettings
from sdxl_operator.spec.adapter_set import DEFAULT_MAX_RANK, DEFAULT_RESIDENT, SET_FIELDS
from sdxl_operator.spec.default_base_model import DEFAULT_REVISION
from sdxl_operator.spec.deployment_validation import validate_deployment_spec
from sdxl_operator.spec.model_source import ModelSource
from sdxl_operator.spec.resolved_deployment_spec import resolve_deployment_spec

# The message of the CRD's rule on spec.accelerator (crds/sdxldeployments.sdxl.io.yaml; a test holds them equal).
NEURON_RULE_MESSAGE = (
    "spec.fineTunes and spec.fineTuneSelector need spec.accelerator nvidia or cpu: on Inferentia2 (neuron) a "
    "LoRA is fused into the model at compile time, so one compiled model serves exactly one fine-tune; use one "
    "SDXLDeployment with spec.fineTune per fine-tune, or set spec.accelerator to nvidia or cpu"
)
NEURON_MESSAGE = f"spec.accelerator: {NEURON_RULE_MESSAGE}"
ADAPTERS_FIELD = "adapters"


def adapter_set_spec_errors(spec: Mapping[str, Any]) -> list[str]:
    """All problems of a set-form ``spec`` (see the module docstring); empty when valid."""
    errors = validate_deployment_spec(spec)
    names = spec.get("fineTunes")
    if isinstance(names, list) and len({str(name) for name in names}) != len(names):
        errors.append("spec.fineTunes: each name at most once")
    if (spec.get("accelerator") or "neuron") == "neuron" and not any(NEURON_RULE_MESSAGE in e for e in errors):
        errors.append(NEURON_MESSAGE)
    return errors


def adapter_set_source(spec: Mapping[str, Any]) -> ModelSource:
    """The model a set's pods load: its base model alone (the LoRAs come from the adapters file)."""
    return ModelSource(lora="", lora_sha256=None, base_model=str(spec["baseModel"]),
                       base_revision=str(spec.get("baseModelRevision") or DEFAULT_REVISION), finetune=None)


def resolve_adapter_set_spec(spec: Mapping[str, Any], *, name: str, namespace: str, uid: str) -> dict[str, Any]:
    """A new dict: the validated set-form ``spec`` with defaults, ``adapters`` and metadata; no LoRA."""
    resolved = resolve_deployment_spec(spec, adapter_set_source(spec), name=name, namespace=namespace, uid=uid)
    for field in (*SET_FIELDS, "lora"):
        resolved.pop(field, None)
    wanted: Mapping[str, Any] = resolved.get(ADAPTERS_FIELD) or {}
    resolved[ADAPTERS_FIELD] = {"resident": int(wanted.get("resident") or DEFAULT_RESIDENT),
                                "maxRank": int(wanted.get("maxRank") or DEFAULT_MAX_RANK)}
    return resolved


def adapter_set_key(resolved: Mapping[str, Any], settings: OperatorSettings) -> str:
    """A sha256 (64 hex) of what the pods of a set run: base model, revision, accelerator, image."""
    accelerator = str(resolved["accelerator"])
    parts = {"kind": "adapter-set", "baseModel": resolved["baseModel"],
             "baseModelRevision": resolved.get("baseModelRevision"), "accelerator": accelerator,
             "image": image_for(accelerator, settings)}
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode("utf-8")).hexdigest()
