"""How well a fine-tune of `builtin:world` learned `builtin:world-subject`, read from pixels.

Three DreamBooth measures, each a share of generated images judged by small_world.read_scene:
- identity: images for "a photo of sks person <in a setting>" that show the subject's look
  (its hair and shirt colours, a combination the base model never saw);
- prompt fidelity: the same images that show the setting the prompt asked for (the fine-tune
  must not forget the rest of the world, nor tie the subject to its photos' backgrounds);
- class drift: how much more often "a photo of a person" shows the subject's look after the
  fine-tune than before (language drift, which prior preservation is meant to hold back).

The pure functions take images; `measure_world_quality` generates them with a pipeline.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from sdxl_workloads.builtin.small_world import (
    SETTING_PHRASES,
    SETTINGS,
    SUBJECT_HAIR,
    SUBJECT_SHIRT,
    WORLD_RESOLUTION,
    read_scene,
)

INSTANCE_PROMPT = "a photo of sks person"
CLASS_PROMPT = "a photo of a person"

ImageLike = Image.Image | np.ndarray


def subject_prompts(instance_prompt: str = INSTANCE_PROMPT) -> dict[str, str]:
    """setting -> "a photo of sks person on the beach", ..."""
    return {setting: f"{instance_prompt} {SETTING_PHRASES[setting]}" for setting in SETTINGS}


def subject_look_share(images: Iterable[ImageLike]) -> float:
    """The share of images showing the subject's hair and shirt colours together."""
    scenes = [read_scene(image) for image in images]
    if not scenes:
        return 0.0
    return sum(s.hair == SUBJECT_HAIR and s.shirt == SUBJECT_SHIRT for s in scenes) / len(scenes)


def identity(images_by_setting: Mapping[str, Sequence[ImageLike]]) -> float:
    """Identity: the subject's look, over the images of every setting prompt."""
    return subject_look_share(image for images in images_by_setting.values() for image in images)


def prompt_fidelity(images_by_setting: Mapping[str, Sequence[ImageLike]]) -> float:
    """Prompt fidelity: the share of images showing the setting their prompt asked for."""
    judged = [read_scene(image).setting == setting
              for setting, images in images_by_setting.items() for image in images]
    return sum(judged) / len(judged) if judged else 0.0


def class_drift(class_images_before: Sequence[ImageLike], class_images_after: Sequence[ImageLike]) -> float:
    """Class drift: the subject's look in class-prompt images, after minus before."""
    return subject_look_share(class_images_after) - subject_look_share(class_images_before)


@dataclass(frozen=True)
class WorldQuality:
    """What one pipeline draws for the subject's prompts and for the class prompt."""

    identity: float
    prompt_fidelity: float
    class_subject_share: float  # class_drift is this after a fine-tune minus this before it
    images_per_prompt: int


def generate(pipe: Any, prompt: str, count: int, steps: int, seed: int = 0,
             guidance_scale: float = 5.0) -> list[np.ndarray]:
    """`count` images of one prompt at the world's resolution, each from its own seeded generator."""
    import torch

    from sdxl_workloads import random_draws

    generators = [random_draws.pipeline_generator(seed + index) for index in range(count)]
    with torch.no_grad():
        images = pipe([prompt] * count, height=WORLD_RESOLUTION, width=WORLD_RESOLUTION,
                      num_inference_steps=steps, guidance_scale=guidance_scale, generator=generators,
                      output_type="np").images
    return list(images)


def measure_world_quality(pipe: Any, images_per_prompt: int = 8, steps: int = 10, seed: int = 0,
                          instance_prompt: str = INSTANCE_PROMPT, class_prompt: str = CLASS_PROMPT) -> WorldQuality:
    """Generate for the four setting prompts and the class prompt, and read the images."""
    by_setting = {setting: generate(pipe, prompt, images_per_prompt, steps, seed)
                  for setting, prompt in subject_prompts(instance_prompt).items()}
    class_images = generate(pipe, class_prompt, images_per_prompt, steps, seed)
    return WorldQuality(identity=identity(by_setting), prompt_fidelity=prompt_fidelity(by_setting),
                        class_subject_share=subject_look_share(class_images), images_per_prompt=images_per_prompt)
