"""Attach trainable LoRA adapters to the frozen UNet (and optionally both text encoders)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import torch

# CLIP's attention projections: what diffusers' SDXL DreamBooth script trains in the text encoders.
TEXT_ENCODER_TARGET_MODULES = ("q_proj", "k_proj", "v_proj", "out_proj")


def lora_config(rank: int, alpha: float, target_modules: Sequence[str]) -> Any:
    from peft import LoraConfig

    # Gaussian init of A (B starts at zero) as in diffusers' script: the adapter is a no-op at
    # step 0, so step 0 samples equal the base model's.
    return LoraConfig(r=rank, lora_alpha=alpha, init_lora_weights="gaussian",
                      target_modules=list(target_modules))


def add_unet_lora(unet: Any, rank: int, alpha: float, target_modules: Sequence[str]) -> None:
    """Add a LoRA adapter on the UNet's attention projections named in `training.targetModules`."""
    names = {name.rsplit(".", 1)[-1] for name, _ in unet.named_modules()}
    dotted = {name for name, _ in unet.named_modules()}
    missing = [t for t in target_modules if t not in names and not any(n.endswith("." + t) for n in dotted)]
    if missing:
        from sdxl_workloads.protocol import WorkloadError

        raise WorkloadError(
            "InvalidInput",
            f"spec.training.targetModules: {', '.join(missing)} match no UNet layer; "
            "use attention projections such as to_q, to_k, to_v, to_out.0",
        )
    unet.add_adapter(lora_config(rank, alpha, target_modules))


def add_text_encoder_lora(text_encoder: Any, rank: int, alpha: float) -> None:
    """peft's injection directly: transformers' `add_adapter` wrapper refuses peft releases older
    than its own minimum, which the Neuron image's pinned set does not meet."""
    from peft import inject_adapter_in_model

    inject_adapter_in_model(lora_config(rank, alpha, TEXT_ENCODER_TARGET_MODULES), text_encoder,
                            adapter_name="default")


def enable_text_encoder_checkpointing(text_encoder: Any) -> None:
    """Gradient checkpointing that lets the text-encoder LoRA learn under every transformers release.

    transformers 4.x checkpoints reentrantly by default; a reentrant segment whose inputs need no
    gradient (the frozen token embeddings' output) returns outputs that need none either, so the
    LoRA inside gets no gradient at all. Non-reentrant checkpointing (transformers 5's default)
    tracks the parameters themselves; asking for it explicitly makes both library sets agree.
    """
    text_encoder.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})


def upcast_lora_to_fp32(models: Iterable[Any]) -> None:
    """Keep the trainable LoRA weights in fp32 while the frozen weights run in fp16/bf16.

    Optimizer updates of ~1e-4 x weight vanish in half precision; diffusers' scripts do the same
    (`cast_training_params`).
    """
    for model in models:
        for param in model.parameters():
            if param.requires_grad:
                param.data = param.data.to(torch.float32)


def trainable_parameters(model: Any) -> list[torch.nn.Parameter]:
    return [p for p in model.parameters() if p.requires_grad]
