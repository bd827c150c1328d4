"""CLIP-T: each generated image against its own prompt, through a small random CLIP loaded with
`from_pretrained` (behaviour only; a random model's numbers mean nothing)."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from sdxl_workloads.quality.clip_model import ClipModel
from sdxl_workloads.quality.prompt_similarity import prompt_similarity


@pytest.fixture(scope="module")
def clip(tiny_clip_path: Path) -> ClipModel:
    return ClipModel.load(str(tiny_clip_path))


def test_clip_t_is_a_cosine(clip: ClipModel, subject_photos: list[Image.Image]) -> None:
    prompts = [f"a photo of sks person {place}" for place in ("on a beach", "in a forest", "at night")]
    assert -1.0 <= prompt_similarity(clip, subject_photos[:3], prompts) <= 1.0


def test_the_same_pair_scores_the_same_every_time_and_after_a_reload(
    clip: ClipModel, tiny_clip_path: Path, subject_photos: list[Image.Image]
) -> None:
    pair = ([subject_photos[0]], ["a photo of sks person on a beach"])
    first = prompt_similarity(clip, *pair)
    assert prompt_similarity(clip, *pair) == first
    assert prompt_similarity(ClipModel.load(str(tiny_clip_path)), *pair) == pytest.approx(first, abs=1e-6)


def test_each_image_is_scored_with_its_own_prompt(clip: ClipModel, subject_photos: list[Image.Image]) -> None:
    images, prompts = subject_photos[:2], ["a photo of sks person", "a red car parked by a wall"]
    alone = [prompt_similarity(clip, [image], [prompt]) for image, prompt in zip(images, prompts, strict=True)]
    assert prompt_similarity(clip, images, prompts) == pytest.approx(sum(alone) / 2, abs=1e-6)


def test_a_prompt_longer_than_clip_reads_is_cut_not_refused(clip: ClipModel, subject_photos: list[Image.Image]) -> None:
    # SDXL's text encoders read 77 tokens; a longer validation prompt is scored on what they read.
    long_prompt = "a photo of sks person " + "in a very detailed sunny garden " * 40
    assert -1.0 <= prompt_similarity(clip, subject_photos[:1], [long_prompt]) <= 1.0


def test_one_prompt_per_image(clip: ClipModel, subject_photos: list[Image.Image]) -> None:
    with pytest.raises(ValueError, match="one prompt per generated image"):
        prompt_similarity(clip, subject_photos[:2], ["a photo of sks person"])
