"""`SDXLFineTune.spec` as typed dataclasses: every field, its default and its limits, in one place.

The CRD (crds/) and this file must agree on names, defaults and bounds; a contract test compares
them. Field names are snake_case here and camelCase in YAML (derived, see typed_spec.camel).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sdxl_workloads.crd_check import check_against_crd
from sdxl_workloads.typed_spec import invalid, parse, rule, to_camel_dict

DEFAULT_BASE_MODEL = "stabilityai/stable-diffusion-xl-base-1.0"

MIXED_PRECISIONS = ("no", "fp16", "bf16")
OPTIMIZERS = ("adamw", "adamw8bit", "prodigy")
LR_SCHEDULERS = ("constant", "constant_with_warmup", "linear", "cosine")
CROPS = ("center", "face")

MAX_PROMPT_CHARS = 1000
MAX_URI_CHARS = 2048

# A Kubernetes resource quantity ("8", "500m", "32Gi", "1e3").
QUANTITY = r"(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?"  # the CRD's, verbatim

# URI shapes, as the CRD's CEL rules check them (same messages).
_S3_URI = re.compile(r"^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/.*)?$")
_PVC_URI = re.compile(r"^pvc://[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?(/.*)?$")
# field path -> the builtin: names allowed there (none: the field is not a builtin)
_BUILTINS: dict[str, tuple[tuple[str, ...], str]] = {
    "baseModel": (("builtin:tiny", "builtin:tiny-mid"), "the embedded models are builtin:tiny and builtin:tiny-mid"),
    "vae": ((), "there is no embedded VAE: leave vae unset with builtin models"),
    "instanceImages": (("builtin:sample-subject",), "the embedded image set is builtin:sample-subject"),
    "priorPreservation.classImages": (
        (), "there is no embedded class image set: leave classImages unset to generate them"),
    "output": ((), "output must be writable storage (s3://, pvc:// or a path), not a builtin: name"),
}


@dataclass(frozen=True, kw_only=True)
class PriorPreservation:
    """DreamBooth's prior-preservation loss: keep the class ("person") from drifting to the subject."""

    enabled: bool = False  # add the class-image loss term
    num_class_images: int = field(default=100, metadata=rule(low=1, high=10000))  # generated when fewer exist
    loss_weight: float = field(default=1.0, metadata=rule(low=0, high=10))  # weight of the prior loss
    class_images: str | None = field(default=None, metadata=rule(low=1, high=MAX_URI_CHARS))  # URI of existing ones


@dataclass(frozen=True, kw_only=True)
class Training:
    """Optimisation hyperparameters (diffusers' DreamBooth-LoRA SDXL recipe and its usual defaults)."""

    max_steps: int = field(default=500, metadata=rule(low=1, high=100000))  # optimizer steps
    learning_rate: float = field(default=1e-4, metadata=rule(low=0, low_exclusive=True, high=1))  # UNet LoRA
    text_encoder_learning_rate: float = field(  # text-encoder LoRA (with train_text_encoder)
        default=5e-6, metadata=rule(low=0, low_exclusive=True, high=1))
    rank: int = field(default=4, metadata=rule(low=1, high=256))  # LoRA rank r
    alpha: float = field(  # LoRA scale is alpha / rank
        default=4.0, metadata=rule(low=0, low_exclusive=True, high=1024))
    target_modules: list[str] = field(  # UNet modules that get LoRA adapters
        default_factory=lambda: ["to_q", "to_k", "to_v", "to_out.0"],
        metadata=rule(low=1, high=32, item_high=128, pattern=r"[A-Za-z0-9_.]+"))
    resolution: int = field(  # square training size in pixels
        default=1024, metadata=rule(low=64, high=2048, multiple_of=8, why="(the VAE downsamples by 8)"))
    batch_size: int = field(default=1, metadata=rule(low=1, high=64))  # images per micro-batch per GPU
    # micro-batches per step; 4 makes the default 2,000 samples of diffusers' SDXL DreamBooth-LoRA recipe
    gradient_accumulation: int = field(default=4, metadata=rule(low=1, high=128))
    train_text_encoder: bool = False  # also put LoRA on both text encoders
    mixed_precision: str = field(default="bf16", metadata=rule(choices=MIXED_PRECISIONS))  # compute dtype
    gradient_checkpointing: bool = True  # trade compute for activation memory
    optimizer: str = field(default="adamw", metadata=rule(choices=OPTIMIZERS))  # adamw8bit needs CUDA
    lr_scheduler: str = field(default="constant", metadata=rule(choices=LR_SCHEDULERS))
    lr_warmup_steps: int = field(default=0, metadata=rule(low=0, high=100000))  # linear warmup length
    snr_gamma: float = field(default=5.0, metadata=rule(low=0, high=100))  # Min-SNR weighting; 0 = off
    noise_offset: float = field(default=0.0, metadata=rule(low=0, high=1))  # offset noise strength
    max_grad_norm: float = field(  # gradient clipping threshold (global norm)
        default=1.0, metadata=rule(low=0, low_exclusive=True, high=1000))
    seed: int = field(default=42, metadata=rule(low=0, high=2**32 - 1))  # data order, noise, LoRA init
    checkpoint_every: int = field(default=250, metadata=rule(low=0, high=100000))  # steps; 0 = never
    crop: str = field(default="center", metadata=rule(choices=CROPS))  # face: Haar-cascade face crop
    random_flip: bool = True  # mirror images at random, re-drawn every epoch


@dataclass(frozen=True, kw_only=True)
class Validation:
    """Images generated with the LoRA during and after training."""

    prompts: list[str] = field(  # empty = [instancePrompt]
        default_factory=list, metadata=rule(high=16, item_high=MAX_PROMPT_CHARS))
    every: int = field(default=0, metadata=rule(low=0, high=100000))  # steps; 0 = only at the end
    num_inference_steps: int = field(default=25, metadata=rule(low=1, high=200))  # Euler steps
    guidance_scale: float = field(default=5.0, metadata=rule(low=0, high=30))  # classifier-free guidance
    seed: int = field(default=0, metadata=rule(low=0, high=2**32 - 1))  # same images run to run


@dataclass(frozen=True, kw_only=True)
class Resources:
    """What the training pod asks of the cluster (the operator uses these; the trainer ignores them)."""

    gpus: int = field(default=1, metadata=rule(low=0, high=8))  # nvidia.com/gpu
    cpu: str = field(default="8", metadata=rule(high=32, pattern=QUANTITY, why="(a Kubernetes quantity such as \"8\")"))
    memory: str = field(default="32Gi", metadata=rule(high=32, pattern=QUANTITY, why="(a Kubernetes quantity such as \"32Gi\")"))
    node_selector: dict[str, str] = field(default_factory=dict, metadata=rule(high=32, item_high=63))  # node labels
    tolerations: list[dict[str, Any]] = field(default_factory=list, metadata=rule(high=32))  # as in a Pod spec


@dataclass(frozen=True, kw_only=True)
class FineTuneSpec:
    """One DreamBooth + LoRA fine-tune of SDXL."""

    base_model: str = field(  # HF id | s3:// | pvc:// | local path | builtin:tiny | builtin:tiny-mid
        default=DEFAULT_BASE_MODEL, metadata=rule(low=1, high=MAX_URI_CHARS))
    base_model_revision: str = field(  # HF revision (branch, tag or commit)
        default="main", metadata=rule(low=1, high=255, pattern=r"[A-Za-z0-9._/-]+"))
    vae: str | None = field(default=None, metadata=rule(low=1, high=MAX_URI_CHARS))  # e.g. an fp16-fixed VAE
    instance_images: str = field(  # s3:// | pvc:// | local path | builtin:sample-subject
        metadata=rule(low=1, high=MAX_URI_CHARS))
    instance_prompt: str = field(metadata=rule(low=1, high=MAX_PROMPT_CHARS))  # "a photo of sks person"
    class_prompt: str | None = field(  # "a photo of a person"; needed for prior preservation
        default=None, metadata=rule(low=1, high=MAX_PROMPT_CHARS))
    prior_preservation: PriorPreservation = field(default_factory=PriorPreservation)
    training: Training = field(default_factory=Training)
    validation: Validation = field(default_factory=Validation)
    output: str | None = field(default=None, metadata=rule(low=1, high=MAX_URI_CHARS))  # --output overrides
    resources: Resources = field(default_factory=Resources)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FineTuneSpec:
        """Check a camelCase spec dict; raises WorkloadError("InvalidInput", "spec.<field>: ...")."""
        if isinstance(data, Mapping):
            check_against_crd("SDXLFineTune", data)  # the API server's verdict first
        spec = parse(cls, data, "spec")
        for path, (allowed, message) in _BUILTINS.items():
            value = spec.uri_at(path)
            if value is not None:
                _check_uri(f"spec.{path}", value, allowed, message)
        if spec.prior_preservation.enabled and not spec.class_prompt:
            raise invalid("spec.classPrompt", "required when priorPreservation.enabled is true "
                          "(e.g. \"a photo of a person\")")
        return spec

    def uri_at(self, path: str) -> str | None:
        """The URI field at a camelCase path such as "priorPreservation.classImages"."""
        node: Any = self
        for part in path.split("."):
            node = getattr(node, _snake(part))
        return node if isinstance(node, str) else None

    @property
    def validation_prompts(self) -> list[str]:
        return list(self.validation.prompts) or [self.instance_prompt]

    def to_dict(self) -> dict[str, Any]:
        """The full spec with every default filled in, camelCase (written to training_args.json)."""
        result: dict[str, Any] = to_camel_dict(self)
        return result


def _snake(name: str) -> str:
    return re.sub(r"([A-Z])", lambda m: "_" + m.group(1).lower(), name)


def _check_uri(path: str, value: str, allowed_builtins: tuple[str, ...], builtin_message: str) -> None:
    if value.startswith("s3://") and not _S3_URI.match(value):
        raise invalid(path, f"an s3:// URI names a bucket and an optional prefix: s3://bucket/prefix, got {value!r}")
    if value.startswith("pvc://") and not _PVC_URI.match(value):
        raise invalid(path, "a pvc:// URI names a PersistentVolumeClaim in this namespace and an optional path "
                      f"inside it: pvc://claim/path, got {value!r}")
    if value.startswith("builtin:") and value not in allowed_builtins:
        raise invalid(path, f"{builtin_message}, got {value!r}")
