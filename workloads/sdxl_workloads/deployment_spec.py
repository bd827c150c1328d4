"""The part of `SDXLDeployment.spec` that the compile and serve workloads use, typed and checked.

Defaults are the CRD's (see the contract). Fields the workloads do not need (replicas, server, resources,
auth, autoscaling) are accepted and ignored: the operator validated them and owns them. Every error is
a WorkloadError(InvalidInput) naming the field, the value and what is allowed.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from sdxl_workloads.protocol import WorkloadError

ACCELERATORS = ("neuron", "nvidia", "cpu")
AUTO_CAST_TYPES = ("bf16", "fp16", "tf32")
_SHA256 = re.compile(r"^[0-9a-fA-F]{64}$")
# Serving runs on Inferentia2: inf2.xlarge, inf2.8xlarge, inf2.24xlarge, inf2.48xlarge.
_INSTANCE_TYPE = re.compile(r"^inf2\.[0-9]*x?large$")


def _invalid(path: str, problem: str) -> WorkloadError:
    return WorkloadError("InvalidInput", f"spec.{path}: {problem}")


def _int(d: Mapping[str, Any], key: str, path: str, default: int, low: int, high: int,
         multiple_of: int = 1) -> int:
    value = d.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise _invalid(path, f"must be an integer, got {value!r}")
    if not low <= value <= high:
        raise _invalid(path, f"must be between {low} and {high}, got {value}")
    if value % multiple_of:
        raise _invalid(path, f"must be a multiple of {multiple_of} (the VAE downsamples by 8), got {value}")
    return value


def _str(d: Mapping[str, Any], key: str, path: str, default: str | None) -> str | None:
    value = d.get(key, default)
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise _invalid(path, f"must be a non-empty string, got {value!r}")
    return value


def _choice(d: Mapping[str, Any], key: str, path: str, default: str, choices: tuple[str, ...]) -> str:
    value = d.get(key, default)
    if value not in choices:
        raise _invalid(path, f"must be one of {', '.join(choices)}, got {value!r}")
    return str(value)


@dataclass(frozen=True)
class NeuronSettings:
    """Static shapes and compiler settings of an Inferentia2 compile (optimum-neuron)."""

    batch_size: int = 1  # prompts per call the compiled model takes
    height: int = 1024  # image height in pixels, fixed at compile time
    width: int = 1024  # image width in pixels, fixed at compile time
    num_images_per_prompt: int = 1  # images per prompt; the UNet is compiled at batch_size * this
    auto_cast_type: str = "bf16"  # what matmuls are cast to (auto_cast="matmul" always)
    instance_type: str = "inf2.8xlarge"  # the serving instance; compiles target its family

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> NeuronSettings:
        if not isinstance(d, Mapping):
            raise _invalid("neuron", f"must be a mapping, got {d!r}")
        instance_type = _str(d, "instanceType", "neuron.instanceType", cls.instance_type)
        assert instance_type is not None
        if not _INSTANCE_TYPE.match(instance_type):
            raise _invalid("neuron.instanceType",
                           f"must be an Inferentia2 instance type such as inf2.8xlarge, got {instance_type!r}")
        return cls(
            batch_size=_int(d, "batchSize", "neuron.batchSize", cls.batch_size, 1, 8),
            height=_int(d, "height", "neuron.height", cls.height, 256, 2048, multiple_of=8),
            width=_int(d, "width", "neuron.width", cls.width, 256, 2048, multiple_of=8),
            num_images_per_prompt=_int(d, "numImagesPerPrompt", "neuron.numImagesPerPrompt",
                                       cls.num_images_per_prompt, 1, 8),
            auto_cast_type=_choice(d, "autoCastType", "neuron.autoCastType", cls.auto_cast_type,
                                   AUTO_CAST_TYPES),
            instance_type=instance_type,
        )

    def shapes(self) -> dict[str, int]:
        """The static shapes in the spec's (camelCase) names, as the compile key takes them."""
        return {"batchSize": self.batch_size, "height": self.height, "width": self.width,
                "numImagesPerPrompt": self.num_images_per_prompt}


@dataclass(frozen=True)
class DeploymentSpec:
    """What compile/serve need from an SDXLDeployment: the model, the LoRA, where it runs."""

    fine_tune: str | None = None  # name of an SDXLFineTune; the operator turns it into --lora
    lora: str | None = None  # URI of a LoRA file or folder (instead of fine_tune)
    lora_sha256: str | None = None  # pins a direct LoRA URI in the compile key
    base_model: str | None = None  # default: the fine-tune's baseModel; required with lora
    base_model_revision: str | None = None  # HF revision, carried over from the fine-tune
    accelerator: str = "neuron"  # neuron | nvidia | cpu
    neuron: NeuronSettings = field(default_factory=NeuronSettings)
    lora_scale: float = 1.0  # LoRA strength fused into the weights

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> DeploymentSpec:
        if not isinstance(d, Mapping):
            raise WorkloadError("InvalidInput", f"spec: must be a mapping, got {type(d).__name__}")
        fine_tune = _str(d, "fineTune", "fineTune", None)
        lora = _str(d, "lora", "lora", None)
        if fine_tune and lora:
            raise _invalid("lora", "give either fineTune or lora, not both")
        sha = _str(d, "loraSha256", "loraSha256", None)
        if sha is not None and not _SHA256.match(sha):
            raise _invalid("loraSha256", f"must be 64 hexadecimal characters (a sha256), got {sha!r}")
        accelerator = _choice(d, "accelerator", "accelerator", cls.accelerator, ACCELERATORS)
        raw_neuron = d.get("neuron") or {}
        neuron = NeuronSettings.from_dict(raw_neuron)
        # A resolved spec may carry the neuron defaults for any accelerator; settings that differ from
        # them mean the user expects an effect they would not get.
        if accelerator != "neuron" and neuron != NeuronSettings():
            raise _invalid("neuron", f"only applies to accelerator neuron, but accelerator is {accelerator}; "
                                     "remove spec.neuron or set accelerator: neuron")
        scale = d.get("loraScale", cls.lora_scale)
        if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not 0 <= scale <= 2:
            raise _invalid("loraScale", f"must be a number between 0 and 2, got {scale!r}")
        return cls(
            fine_tune=fine_tune,
            lora=lora,
            lora_sha256=sha.lower() if sha else None,
            base_model=_str(d, "baseModel", "baseModel", None),
            base_model_revision=_str(d, "baseModelRevision", "baseModelRevision", None),
            accelerator=accelerator,
            neuron=neuron,
            lora_scale=float(scale),
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
