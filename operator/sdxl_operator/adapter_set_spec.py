"""The spec side of an SDXLDeployment that serves a set of fine-tunes: its checks, resolved spec and key.

* :func:`adapter_set_spec_errors` repeats the CRD's rules for the set forms (exactly one model source,
  ``baseModel`` required, no Neuron, ``adapters`` only with a set), so a spec the API server did not
  check (an emulator without CEL) still ends as Failed / InvalidSpec with the CRD's own message. The
  fields a set shares with a single-model deployment are checked by
  :func:`deployment_validation.validate_deployment_spec`, which knows no set fields: it sees the spec
  without them and with a stand-in ``fineTune``.
* :func:`resolve_adapter_set_spec`: the resolved spec (defaults filled in as for one model) with
  ``adapters: {resident, maxRank}`` and without a LoRA: the pods load the base model and read the
  adapters from a ConfigMap (:mod:`adapters_configmap`) that is deliberately not part of the spec.
* :func:`adapter_set_key`: what the server pods run (base model, revision, accelerator, image), in
  the place a compile key takes for one model (pod annotations, ``status.compileKey``): nothing is
  compiled, and the set of adapters is not in it, so a fine-tune joining never rolls the pods.
Pure.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from sdxl_operator.accelerators import image_for
from sdxl_operator.adapter_set import DEFAULT_MAX_RANK, DEFAULT_RESIDENT, SET_FIELDS
from sdxl_operator.deployment_validation import validate_deployment_spec
from sdxl_operator.finetune_validation import DEFAULT_REVISION
from sdxl_operator.model_source import ModelSource
from sdxl_operator.resolved_deployment_spec import resolve_deployment_spec
from sdxl_operator.settings import OperatorSettings

# The CRD's messages (crds/sdxldeployments.sdxl.io.yaml), word for word.
NEURON_MESSAGE = (
    "spec.accelerator: Forbidden: spec.fineTunes and spec.fineTuneSelector need spec.accelerator nvidia or cpu: "
    "on Inferentia2 (neuron) a LoRA is fused into the model at compile time, so one compiled model serves "
    "exactly one fine-tune; use one SDXLDeployment with spec.fineTune per fine-tune, or set spec.accelerator "
    "to nvidia or cpu"
)
BASE_MODEL_MESSAGE = (
    "spec.baseModel: Required value: spec.baseModel is required with spec.fineTunes or spec.fineTuneSelector: "
    "name the model every fine-tune of the set was trained on, for example builtin:tiny or "
    "stabilityai/stable-diffusion-xl-base-1.0; fine-tunes of another base model are listed in "
    "status.rejectedFineTunes"
)
ONE_SOURCE_MESSAGE = (
    "spec: set exactly one of spec.fineTune (the name of an SDXLFineTune in this namespace), spec.lora (the "
    "URI of a LoRA file or folder), spec.fineTunes (a list of SDXLFineTune names) or spec.fineTuneSelector "
    "(a label selector over this namespace's SDXLFineTunes)"
)
STAND_IN_FINETUNE = "adapter-set"
ADAPTERS_FIELD = "adapters"
SELECTOR_OPERATORS = ("In", "NotIn", "Exists", "DoesNotExist")


def _set_field_errors(spec: Mapping[str, Any]) -> list[str]:
    errors = []
    names = spec.get("fineTunes")
    if names is not None:
        if not isinstance(names, list) or not names or len(names) > 100 or \
                not all(isinstance(name, str) and name for name in names):
            errors.append("spec.fineTunes: a list of 1 to 100 SDXLFineTune names")
        elif len(set(names)) != len(names):
            errors.append("spec.fineTunes: each name at most once")
    selector = spec.get("fineTuneSelector")
    if selector is not None:
        expressions = selector.get("matchExpressions") if isinstance(selector, Mapping) else None
        for index, requirement in enumerate(expressions or []):
            operator = requirement.get("operator") if isinstance(requirement, Mapping) else None
            values = requirement.get("values") if isinstance(requirement, Mapping) else None
            if operator not in SELECTOR_OPERATORS:
                errors.append(f"spec.fineTuneSelector.matchExpressions[{index}].operator: one of "
                              f"{', '.join(SELECTOR_OPERATORS)}")
            elif (operator in ("In", "NotIn")) != bool(values):
                errors.append(f"spec.fineTuneSelector.matchExpressions[{index}]: operators In and NotIn need "
                              "values; Exists and DoesNotExist take none")
    adapters = spec.get(ADAPTERS_FIELD) or {}
    for field, low, high in (("resident", 1, 64), ("maxRank", 1, 256)):
        value = adapters.get(field) if isinstance(adapters, Mapping) else None
        if value is not None and (not isinstance(value, int) or not low <= value <= high):
            errors.append(f"spec.adapters.{field}: an integer from {low} to {high}")
    return errors


def adapter_set_spec_errors(spec: Mapping[str, Any]) -> list[str]:
    """All problems of a set-form ``spec`` (see the module docstring); empty when valid."""
    errors = []
    if spec.get("fineTune") or spec.get("lora") or all(spec.get(field) is not None for field in SET_FIELDS):
        errors.append(ONE_SOURCE_MESSAGE)
    if not spec.get("baseModel"):
        errors.append(BASE_MODEL_MESSAGE)
    if (spec.get("accelerator") or "neuron") == "neuron":
        errors.append(NEURON_MESSAGE)
    errors += _set_field_errors(spec)
    shared = {key: value for key, value in spec.items()
              if key not in (*SET_FIELDS, ADAPTERS_FIELD, "fineTune", "lora")}
    errors += validate_deployment_spec({**shared, "fineTune": STAND_IN_FINETUNE})
    return errors


def resolve_adapter_set_spec(spec: Mapping[str, Any], *, name: str, namespace: str, uid: str) -> dict[str, Any]:
    """A new dict: the validated set-form ``spec`` with defaults, ``adapters`` and metadata; no LoRA."""
    base = ModelSource(lora="", lora_sha256=None, base_model=str(spec["baseModel"]),
                       base_revision=str(spec.get("baseModelRevision") or DEFAULT_REVISION), finetune=None)
    plain = {key: value for key, value in spec.items() if key not in (*SET_FIELDS, ADAPTERS_FIELD)}
    resolved = resolve_deployment_spec(plain, base, name=name, namespace=namespace, uid=uid)
    resolved.pop("lora", None)
    wanted: Mapping[str, Any] = spec.get(ADAPTERS_FIELD) or {}
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
