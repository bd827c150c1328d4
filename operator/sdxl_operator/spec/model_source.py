"""Where an SDXLDeployment's model comes from: its fine-tune's LoRA, or a LoRA URI given directly.

``spec.lora`` needs no waiting. ``spec.fineTune`` names an SDXLFineTune in the same namespace: until it
has succeeded the deployment waits (phase Pending, condition FineTuneReady=False with one of the
reasons below); a failed fine-tune fails the deployment with FineTuneFailed and the fine-tune's own
message. The base model defaults to the fine-tune's (itself defaulted as SDXLFineTune validation does), so
the LoRA is compiled onto what it was trained on.
Pure: the caller reads the fine-tune.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from sdxl_contract.failure_reasons import FailureReason
from sdxl_operator.spec.default_base_model import DEFAULT_BASE_MODEL, DEFAULT_REVISION

NOT_FOUND = "FineTuneNotFound"
TRAINING = "FineTuneTraining"
PENDING = "FineTunePending"


@dataclasses.dataclass(frozen=True)
class ModelSource:
    """The inputs of a compile: the LoRA (and its digest when known) and the base model it goes on."""

    lora: str
    lora_sha256: str | None
    base_model: str
    base_revision: str
    finetune: str | None  # the SDXLFineTune it came from, if any


@dataclasses.dataclass(frozen=True)
class FineTuneWait:
    """The fine-tune is not usable (yet): a condition reason, a message, and whether it is final."""

    reason: str
    message: str
    failed: bool = False


def model_source(spec: Mapping[str, Any], finetune: Mapping[str, Any] | None) -> ModelSource | FineTuneWait:
    """The model source of a validated deployment ``spec``, given its fine-tune object (or None)."""
    if spec.get("lora"):
        return ModelSource(
            lora=str(spec["lora"]), lora_sha256=spec.get("loraSha256") or None,
            base_model=str(spec["baseModel"]), base_revision=str(spec.get("baseModelRevision") or DEFAULT_REVISION),
            finetune=None,
        )
    name = str(spec.get("fineTune"))
    if finetune is None:
        return FineTuneWait(NOT_FOUND, f"SDXLFineTune {name} does not exist in this namespace yet; create it, "
                                       "or correct spec.fineTune")
    status: Mapping[str, Any] = finetune.get("status") or {}
    phase = status.get("phase")
    if phase == "Failed":
        failure = status.get("failure") or {}
        detail = f" ({failure.get('reason')}): {failure.get('message')}" if failure else ""
        return FineTuneWait(FailureReason.FINETUNE_FAILED.value, f"SDXLFineTune {name} failed{detail}", failed=True)
    if phase == "Succeeded":
        artifacts = status.get("artifacts") or {}
        lora = artifacts.get("lora")
        if not lora:
            return FineTuneWait(FailureReason.FINETUNE_FAILED.value,
                                f"SDXLFineTune {name} succeeded but reported no LoRA in status.artifacts.lora",
                                failed=True)
        ft_spec: Mapping[str, Any] = finetune.get("spec") or {}
        return ModelSource(
            lora=str(lora), lora_sha256=artifacts.get("loraSha256") or None,
            base_model=str(spec.get("baseModel") or ft_spec.get("baseModel") or DEFAULT_BASE_MODEL),
            base_revision=str(spec.get("baseModelRevision") or ft_spec.get("baseModelRevision") or DEFAULT_REVISION),
            finetune=name,
        )
    if phase == "Training":
        progress = status.get("progress") or {}
        step = f" (step {progress['step']} of {progress.get('totalSteps', '?')})" if "step" in progress else ""
        return FineTuneWait(TRAINING, f"waiting for SDXLFineTune {name} to finish training{step}")
    return FineTuneWait(PENDING, f"waiting for SDXLFineTune {name} to start training")
