"""Sample images with the LoRA being trained and save them as one grid PNG per occasion."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from sdxl_workloads.train import image_sampling


def image_grid(images: Sequence[Image.Image], columns: int | None = None) -> Image.Image:
    """Tile equally sized images left to right, top to bottom."""
    if not images:
        raise ValueError("no images to put in a grid")
    columns = columns or math.ceil(math.sqrt(len(images)))
    rows = math.ceil(len(images) / columns)
    width, height = images[0].size
    grid = Image.new("RGB", (columns * width, rows * height), "white")
    for index, image in enumerate(images):
        grid.paste(image.convert("RGB"), ((index % columns) * width, (index // columns) * height))
    return grid


@torch.no_grad()
def generate_images(pipe: Any, prompts: Sequence[str], *, resolution: int, num_inference_steps: int,
                    guidance_scale: float, seed: int,
                    autocast: Callable[[], Any] = contextlib.nullcontext) -> list[Image.Image]:
    """One image per prompt, each from its own seeded generator so a prompt's image is
    comparable across steps and runs. `autocast` is the training run's; the VAE decodes in its own
    dtype (see image_sampling)."""
    return [image_sampling.sample_image(pipe, prompt, resolution=resolution, num_inference_steps=num_inference_steps,
                                        guidance_scale=guidance_scale, seed=seed + index, autocast=autocast)
            for index, prompt in enumerate(prompts)]


def save_validation_grid(pipe: Any, prompts: Sequence[str], out_file: Path, *, resolution: int,
                         num_inference_steps: int, guidance_scale: float, seed: int,
                         autocast: Callable[[], Any] = contextlib.nullcontext) -> Path:
    images = generate_images(pipe, prompts, resolution=resolution, num_inference_steps=num_inference_steps,
                             guidance_scale=guidance_scale, seed=seed, autocast=autocast)
    out_file.parent.mkdir(parents=True, exist_ok=True)
    image_grid(images).save(out_file)
    return out_file
