"""The diffusers backend (cpu and nvidia): a prepared (LoRA already fused) pipeline folder, or a
base pipeline plus a LoRA fused at load time at `lora_scale`.

On a GPU the weights are fp16 and the VAE decodes one image at a time (slicing) and, above its
tile size, in tiles: decoding is where SDXL's memory peaks (8 images at 1024 px in one VAE call
risk running out of memory on a 24 GB card). SDXL's VAE overflows in fp16; its config says so
(`force_upcast: true`) and the pipeline then decodes in fp32, one sliced image at a time. A VAE
made for fp16 (such as madebyollin/sdxl-vae-fp16-fix) says `force_upcast: false` and decodes in fp16.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sdxl_workloads.protocol import WorkloadError
from sdxl_workloads.server.backends import (
    GenerationCancelled,
    GenerationParams,
    ModelLimits,
    ShouldStop,
)
from sdxl_workloads.server.schemas import MAX_SIDE

log = logging.getLogger(__name__)

LORA_WEIGHT_NAME = "pytorch_lora_weights.safetensors"


def size_limits(default_side: int) -> tuple[int, int]:
    """(min, max) image side for a model trained at `default_side`: a quarter to twice it,
    in multiples of 8. Outside that SDXL-type models make garbage, and far above it one request
    could hold the model (or its memory) for minutes."""
    low = max(8, math.ceil(default_side / 4 / 8) * 8)
    return low, min(MAX_SIDE, default_side * 2)


def lora_location(lora: str) -> tuple[str, str]:
    """(folder, weight file name) for `load_lora_weights`, from a file or a folder URI's local path."""
    path = Path(lora)
    if path.is_file():
        return str(path.parent), path.name
    for folder in (path, path / "lora"):
        if (folder / LORA_WEIGHT_NAME).is_file():
            return str(folder), LORA_WEIGHT_NAME
    raise WorkloadError(
        "InvalidInput",
        f"lora {lora}: no LoRA weights found; give the .safetensors file or a folder holding "
        f"{LORA_WEIGHT_NAME}")


def configure_for_device(pipe: Any, device: str) -> Any:
    """Memory settings for `device`, applied before the pipeline moves there.

    Split out of `DiffusersBackend.load` so a CPU-only test can check the GPU's configuration on
    the real pipeline object: only the final `.to("cuda")` needs a GPU.
    """
    pipe.set_progress_bar_config(disable=True)
    if device == "cuda":
        pipe.vae.enable_slicing()
        # Tiles only above the VAE's tile size (1024 px for SDXL): free at the default size, and
        # what keeps 2048 px (twice the default, the largest size served) within memory.
        pipe.vae.enable_tiling()
        log.info("VAE decode: sliced and tiled, in %s", "fp32 (force_upcast)" if pipe.vae.config.force_upcast
                 else f"{pipe.vae.dtype} (the VAE declares itself safe in it)")
    return pipe


def load_pipeline(model_path: str, lora_path: str | None, lora_scale: float, device: str) -> Any:
    """The pipeline in the device's dtype with the LoRA (if any) fused, configured for `device`
    and not yet moved there."""
    import torch
    from diffusers import StableDiffusionXLPipeline

    # fp16 halves memory and doubles speed on a GPU; CPUs have no fast fp16 kernels.
    dtype = torch.float16 if device == "cuda" else torch.float32
    pipe = StableDiffusionXLPipeline.from_pretrained(model_path, torch_dtype=dtype)
    if lora_path is not None:
        folder, weight_name = lora_location(lora_path)
        try:
            pipe.load_lora_weights(folder, weight_name=weight_name)
        except Exception as err:  # diffusers raises several types for a mismatched LoRA
            raise WorkloadError(
                "InvalidInput",
                f"lora {lora_path}: cannot be applied to {model_path}: {type(err).__name__}: {err}") from err
        # Fused once here so each step pays nothing for the LoRA; then drop the adapter
        # layers, the fused weights stay.
        pipe.fuse_lora(lora_scale=lora_scale)
        pipe.unload_lora_weights()
    return configure_for_device(pipe, device)


class DiffusersBackend:
    """`model` and `lora` are artifact URIs (builtin:tiny, pvc://, s3://, local paths, HF ids);
    they are fetched in `load()`, which runs in the background while /healthz already answers."""

    def __init__(self, model: str, lora: str | None = None, lora_scale: float = 1.0,
                 device: str = "cpu") -> None:
        if device not in ("cpu", "cuda"):
            raise ValueError(f"device must be cpu or cuda, got {device!r}")
        self.model = model
        self.lora = lora
        self.lora_scale = lora_scale
        self.device = device
        self.description = f"{model} (diffusers, {device})" + (f" + LoRA {lora} at {lora_scale:g}" if lora else "")
        self.pipeline: Any = None

    def load(self) -> ModelLimits:
        from sdxl_workloads.models.references import local_input, resolve_model

        self.model_path = resolve_model(self.model)
        self.lora_path = str(local_input(self.lora)) if self.lora is not None else None
        local = Path(self.model_path)
        if local.exists() and not (local / "model_index.json").is_file():
            raise WorkloadError(
                "InvalidInput",
                f"--model {self.model}: {local} is not a diffusers pipeline folder (no model_index.json)")
        pipe = load_pipeline(self.model_path, self.lora_path, self.lora_scale, self.device)
        self.pipeline = pipe.to(self.device)
        default_side = int(pipe.unet.config.sample_size) * int(pipe.vae_scale_factor)
        low, high = size_limits(default_side)
        return ModelLimits(default_width=default_side, default_height=default_side,
                           min_side=low, max_side=high)

    def generate(self, batch: Sequence[GenerationParams], should_stop: ShouldStop) -> list[list[Any]]:
        return run_pipeline(self.pipeline, batch, should_stop)


def run_pipeline(pipeline: Any, batch: Sequence[GenerationParams], should_stop: ShouldStop) -> list[list[Any]]:
    """One pipeline call for a compatible batch; the images grouped per request, in order."""
    import torch

    first = batch[0]
    prompts: list[str] = []
    negatives: list[str] = []
    generators = []
    for params in batch:
        for seed in params.image_seeds():
            prompts.append(params.prompt)
            negatives.append(params.negative_prompt or "")
            # CPU generators: the same seed gives the same latents on every device.
            generators.append(torch.Generator("cpu").manual_seed(seed))

    def stop_between_steps(pipe: Any, step: int, timestep: Any, tensors: dict[str, Any]) -> dict[str, Any]:
        if should_stop():
            raise GenerationCancelled("every request of this batch gave up")
        return tensors

    with torch.inference_mode():
        output = pipeline(
            prompt=prompts,
            negative_prompt=negatives if first.negative_prompt is not None else None,
            num_inference_steps=first.num_inference_steps,
            guidance_scale=first.guidance_scale,
            width=first.width,
            height=first.height,
            generator=generators,
            num_images_per_prompt=1,
            output_type="pil",
            callback_on_step_end=stop_between_steps,
        )
    images = list(output.images)
    grouped: list[list[Any]] = []
    for params in batch:
        grouped.append(images[: params.num_images])
        images = images[params.num_images:]
    return grouped
