"""Prepare a ready-to-serve diffusers pipeline for NVIDIA or CPU: base + LoRA fused, saved once.

Serving pods then load one folder with `StableDiffusionXLPipeline.from_pretrained(folder)` and start
without loading or fusing a LoRA (what `accelerator: neuron` gets from its compile, the GPU/CPU path
gets from this). The LoRA is fused in fp32 and the result cast afterwards, so fp16 rounding happens
once, on the final weights.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sdxl_workloads.protocol import WorkloadError

# The adapter's name while it is loaded; it is gone from the saved pipeline.
ADAPTER_NAME = "finetune"
# What the weights are saved as: fp16 halves the artifact and the GPU's memory; CPUs have no fast fp16.
SAVE_DTYPES = {"nvidia": "float16", "cpu": "float32"}


def load_base_pipeline(base_model: str, revision: str | None) -> Any:
    """The base SDXL pipeline on the CPU, in fp32 (the default dtype; fusing needs no accelerator)."""
    from diffusers import StableDiffusionXLPipeline

    kwargs: dict[str, Any] = {"revision": revision} if revision else {}
    try:
        return StableDiffusionXLPipeline.from_pretrained(base_model, **kwargs)
    except (OSError, ValueError) as err:
        raise WorkloadError(
            "InvalidInput",
            f"baseModel: cannot load an SDXL pipeline from {base_model!r} ({err}); give a diffusers-format "
            "SDXL folder, a Hugging Face model id, or builtin:tiny",
        ) from err


def fuse_lora(pipe: Any, lora_file: Path, lora_scale: float) -> Any:
    """Load the LoRA, fuse it into the UNet / text encoder weights at `lora_scale`, drop the adapter."""
    try:
        pipe.load_lora_weights(str(lora_file.parent), weight_name=lora_file.name, adapter_name=ADAPTER_NAME)
    except (ValueError, KeyError, RuntimeError) as err:
        raise WorkloadError("InvalidInput", f"lora: {lora_file.name} does not load into this base model "
                                            f"({type(err).__name__}: {err})") from err
    pipe.fuse_lora(lora_scale=lora_scale, adapter_names=[ADAPTER_NAME])
    # After fusing, the adapter layers only cost memory and would be saved as peft modules.
    pipe.unload_lora_weights()
    return pipe


def save_prepared_pipeline(pipe: Any, output_dir: Path, accelerator: str) -> str:
    """Save in diffusers layout with safetensors; returns the dtype name the weights were saved in."""
    import torch

    if accelerator not in SAVE_DTYPES:
        raise ValueError(f"no prepared pipeline for accelerator {accelerator!r}")
    dtype_name = SAVE_DTYPES[accelerator]
    pipe.to(dtype=getattr(torch, dtype_name))
    pipe.save_pretrained(str(output_dir), safe_serialization=True)
    return dtype_name
