"""DreamBooth prior preservation: class images from the base model itself.

Training on a handful of photos of one person drifts the whole class ("a photo of a person"
starts to look like them) and narrows its variety. DreamBooth counters it by also training on
images the *base* model makes for the class prompt, with their loss weighted by
`priorPreservation.lossWeight`. Existing class images (`priorPreservation.classImages`) are used
first; the missing ones are generated, as diffusers' script does, and saved with the run under
`class_images/` so they can be inspected and reused.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from sdxl_workloads import protocol
from sdxl_workloads.storage.atomic_write import write_then_rename
from sdxl_workloads.train import image_sampling

CLASS_IMAGE_DIR = "class_images"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
# Sampling steps for generated class images: enough for the base model's typical images; they
# are a regulariser, not the product.
CLASS_IMAGE_STEPS = 30
CLASS_IMAGE_GUIDANCE = 5.0


def existing_class_images(folder: Path | None) -> list[Path]:
    if folder is None:
        return []
    if not folder.is_dir():
        raise protocol.WorkloadError(
            "InvalidInput",
            f"spec.priorPreservation.classImages: {folder} is not a folder of images",
        )
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def generated_image_name(index: int) -> str:
    return f"class-{index:05d}.png"


@torch.no_grad()
def ensure_class_images(pipe: Any, class_prompt: str, num_class_images: int, out_dir: Path, *,
                        existing: Sequence[Path] = (), resolution: int, seed: int,
                        num_inference_steps: int = CLASS_IMAGE_STEPS,
                        guidance_scale: float = CLASS_IMAGE_GUIDANCE,
                        autocast: Callable[[], Any] = contextlib.nullcontext) -> list[Path]:
    """Return `num_class_images` class image paths, generating the missing ones into out_dir.

    Image i is generated from seed + i, so a resumed or repeated run makes the same images and
    already generated files in out_dir are reused. `autocast` is the training run's (the frozen
    UNet is in bf16/fp16 while the VAE stays fp32; image_sampling decodes in the VAE's dtype).
    """
    paths = list(existing[:num_class_images])
    missing = num_class_images - len(paths)
    if missing <= 0:
        return paths
    out_dir.mkdir(parents=True, exist_ok=True)
    for index in range(missing):
        target = out_dir / generated_image_name(index)
        if not target.is_file():
            image = image_sampling.sample_image(
                pipe, class_prompt, resolution=resolution, num_inference_steps=num_inference_steps,
                guidance_scale=guidance_scale, seed=seed + index, autocast=autocast)
            write_then_rename(target, lambda temp, image=image: image.save(temp, format="PNG"), folder=False)
            protocol.emit_event("log", message=f"generated class image {index + 1}/{missing}")
        paths.append(target)
    return paths
