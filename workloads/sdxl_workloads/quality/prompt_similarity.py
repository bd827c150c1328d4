"""Prompt fidelity (DreamBooth's CLIP-T): how well each generated image matches its own prompt."""

from __future__ import annotations

from collections.abc import Sequence

from PIL import Image

from sdxl_workloads.quality.clip_model import ClipModel
from sdxl_workloads.quality.pairwise_cosine import mean_matched_cosine


def prompt_similarity(clip: ClipModel, generated: Sequence[Image.Image], prompts: Sequence[str]) -> float:
    """Mean cosine of each generated image's CLIP embedding with its prompt's, in [-1, 1].

    `prompts[i]` is the prompt image i was generated from. The subject's rare token ("sks") means
    nothing to CLIP; it is scored as the rest of the words are."""
    if len(generated) != len(prompts):
        raise ValueError(f"one prompt per generated image: {len(generated)} images, {len(prompts)} prompts")
    return mean_matched_cosine(clip.embed_images(generated), clip.embed_texts(prompts))
