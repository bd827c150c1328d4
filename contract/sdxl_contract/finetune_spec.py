"""``SDXLFineTune.spec`` as frozen dataclasses: the one typed form the operator and the trainer share.

Each field says its Python type and what it is for; its default, bounds and allowed values are the
CRD's (crds/sdxlfinetunes.sdxl.io.yaml), applied by :meth:`FineTuneSpec.from_dict` before a dataclass
is built. Field names are snake_case here and camelCase in YAML (:func:`spec_building.camel`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from sdxl_contract.pod_scheduling import Scheduling
from sdxl_contract.spec_building import build_spec, to_camel_dict

KIND = "SDXLFineTune"


@dataclass(frozen=True, kw_only=True)
class PriorPreservation:
    """DreamBooth's prior-preservation loss: keep the class ("person") from drifting to the subject."""

    enabled: bool  # add the class-image loss term
    num_class_images: int  # generated when fewer exist
    loss_weight: float  # weight of the prior loss
    class_images: str | None = None  # URI of existing class images


@dataclass(frozen=True, kw_only=True)
class Training:
    """Optimisation hyperparameters (diffusers' DreamBooth-LoRA SDXL recipe and its usual defaults)."""

    max_steps: int  # optimizer steps
    learning_rate: float  # UNet LoRA
    text_encoder_learning_rate: float  # text-encoder LoRA (with train_text_encoder)
    rank: int  # LoRA rank r
    alpha: float  # LoRA scale is alpha / rank
    target_modules: list[str]  # UNet modules that get LoRA adapters
    resolution: int  # square training size in pixels
    batch_size: int  # images per micro-batch per GPU
    # micro-batches per step; 4 makes the default 2,000 samples of diffusers' SDXL DreamBooth-LoRA recipe
    gradient_accumulation: int
    train_text_encoder: bool  # also put LoRA on both text encoders
    mixed_precision: str  # compute dtype: no | fp16 | bf16
    gradient_checkpointing: bool  # trade compute for activation memory
    optimizer: str  # adamw | adamw8bit (needs CUDA) | prodigy
    lr_scheduler: str  # constant | constant_with_warmup | linear | cosine
    lr_warmup_steps: int  # linear warmup length
    snr_gamma: float  # Min-SNR weighting; 0 = off
    noise_offset: float  # offset noise strength
    max_grad_norm: float  # gradient clipping threshold (global norm)
    weight_decay: float  # AdamW weight decay on the UNet LoRA (prodigy: its own)
    text_encoder_weight_decay: float  # the same on the text encoders' LoRA
    seed: int  # data order, noise, LoRA init
    checkpoint_every: int  # steps; 0 = never
    crop: str  # center | face (Haar-cascade face crop)
    random_flip: bool  # mirror images at random, re-drawn every epoch


@dataclass(frozen=True, kw_only=True)
class Validation:
    """Images generated with the LoRA during and after training."""

    prompts: list[str]  # empty = [instancePrompt]
    every: int  # steps; 0 = only at the end
    num_inference_steps: int  # Euler steps
    guidance_scale: float  # classifier-free guidance
    seed: int  # same images run to run


@dataclass(frozen=True, kw_only=True)
class Quality:
    """The quality report computed after training (status.quality)."""

    enabled: bool
    clip_model: str | None = None  # hub id or folder of CLIP-I/CLIP-T; None skips them
    dino_model: str | None = None  # hub id or folder of the DINO similarity; None skips it
    face: bool  # dlib face similarity


@dataclass(frozen=True, kw_only=True)
class Resources:
    """What the training pod asks of the cluster (the operator uses these; the trainer ignores them)."""

    gpus: int  # nvidia.com/gpu
    cpu: str  # a Kubernetes quantity, e.g. "8"
    memory: str  # a Kubernetes quantity, e.g. "32Gi"
    node_selector: dict[str, str]  # node labels
    tolerations: list[dict[str, Any]]  # as in a Pod spec


@dataclass(frozen=True, kw_only=True)
class FineTuneSpec:
    """One DreamBooth + LoRA fine-tune of SDXL."""

    base_model: str  # HF id | s3:// | pvc:// | local path | builtin:tiny | builtin:tiny-mid
    base_model_revision: str  # HF revision (branch, tag or commit)
    vae: str | None = None  # e.g. an fp16-fixed VAE
    instance_images: str  # s3:// | pvc:// | local path | builtin:sample-subject
    instance_prompt: str  # "a photo of sks person"
    class_prompt: str | None = None  # "a photo of a person"; needed for prior preservation
    prior_preservation: PriorPreservation
    training: Training
    validation: Validation
    quality: Quality
    output: str | None = None  # artifact URI; the operator defaults it, the trainer's --output overrides
    resources: Resources
    scheduling: Scheduling  # affinity, priority, spread, pod labels/annotations of the training pod

    @classmethod
    def from_dict(cls, data: object) -> FineTuneSpec:
        """A camelCase spec (a user's or a resolved one) checked and defaulted by the CRD.

        Raises :class:`~sdxl_contract.spec_building.InvalidSpec` naming the field.
        """
        return build_spec(cls, KIND, data)

    def uri_at(self, path: str) -> str | None:
        """The URI field at a camelCase path such as "priorPreservation.classImages"."""
        node: Any = self
        for part in path.split("."):
            node = getattr(node, re.sub(r"([A-Z])", lambda m: "_" + m.group(1).lower(), part))
        return node if isinstance(node, str) else None

    @property
    def validation_prompts(self) -> list[str]:
        return list(self.validation.prompts) or [self.instance_prompt]

    def to_dict(self) -> dict[str, Any]:
        """The full spec with every default filled in, camelCase (written to training_args.json)."""
        result: dict[str, Any] = to_camel_dict(self)
        return result

