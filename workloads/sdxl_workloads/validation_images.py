"""Sample images with the LoRA being trained and save them as one grid PNG per occasion."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from PIL import Image


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
                    guidance_scale: float, seed: int) -> list[Image.Image]:
    """One image per prompt, each from its own seeded generator so a prompt's image is
    comparable across steps and runs."""
    images: list[Image.Image] = []
    for index, prompt in enumerate(prompts):
        generator = torch.Generator(device="cpu").manual_seed(seed + index)
        result = pipe(prompt, height=resolution, width=resolution, num_inference_steps=num_inference_steps,
                      guidance_scale=guidance_scale, generator=generator)
        images.append(result.images[0])
    return images


def save_validation_grid(pipe: Any, prompts: Sequence[str], out_file: Path, *, resolution: int,
                         num_inference_steps: int, guidance_scale: float, seed: int) -> Path:
    images = generate_images(pipe, prompts, resolution=resolution, num_inference_steps=num_inference_steps,
                             guidance_scale=guidance_scale, seed=seed)
    out_file.parent.mkdir(parents=True, exist_ok=True)
    image_grid(images).save(out_file)
    return out_file
