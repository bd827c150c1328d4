"""builtin:world, the shipped pretrained model: it loads through `from_pretrained` and draws the
world its captions ask for, read back from the pixels."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import pytest

from sdxl_workloads.builtin.small_world import SETTING_PHRASES, SETTINGS, read_scene
from sdxl_workloads.builtin.world_pretraining import PROVENANCE_FILE, WORLD_MODEL_DIR
from sdxl_workloads.builtin.world_quality import generate
from sdxl_workloads.models.references import resolve_model

# Measured on the shipped weights with these prompts, seeds and steps (the pipeline is
# deterministic on the CPU): settings 16/16, hair 15/16. The thresholds leave a margin for
# another torch build's floating-point order.
MIN_SETTINGS_RIGHT = 14
MIN_HAIR_RIGHT = 12
STEPS = 10


@pytest.fixture(scope="module")
def world_pipe() -> Any:
    from diffusers import StableDiffusionXLPipeline

    pipe = StableDiffusionXLPipeline.from_pretrained(resolve_model("builtin:world"))
    pipe.set_progress_bar_config(disable=True)
    return pipe


def test_builtin_world_is_the_shipped_folder_in_diffusers_layout() -> None:
    folder = Path(resolve_model("builtin:world"))
    assert folder == WORLD_MODEL_DIR
    for part in ("unet", "vae", "text_encoder", "text_encoder_2"):
        assert list((folder / part).glob("*.safetensors")), part
    for part in ("tokenizer", "tokenizer_2"):
        assert (folder / part / "vocab.json").is_file() and (folder / part / "merges.txt").is_file()
    provenance = json.loads((folder / PROVENANCE_FILE).read_text())
    assert {"config", "wallSeconds", "libraries", "rebuild"} <= set(provenance)
    assert provenance["config"]["seed"] == 0
    # A few MB, fit to ship in the package.
    size = sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())
    assert size < 20 * 1024 * 1024


def test_the_model_draws_the_setting_and_hair_colour_asked_for(world_pipe: Any) -> None:
    from diffusers import StableDiffusionXLPipeline

    assert isinstance(world_pipe, StableDiffusionXLPipeline)
    hairs = ("red", "blonde", "black", "blue")
    settings_right = hair_right = 0
    misses = []
    for index, (setting, hair) in enumerate(itertools.product(SETTINGS, hairs)):
        prompt = f"a photo of a person with {hair} hair {SETTING_PHRASES[setting]}"
        read = read_scene(generate(world_pipe, prompt, 1, STEPS, seed=index)[0])
        settings_right += read.setting == setting
        hair_right += read.hair == hair
        if (read.setting, read.hair) != (setting, hair):
            misses.append(f"{prompt!r} -> {read.hair} hair, {read.setting}")
    print(f"settings {settings_right}/16, hair {hair_right}/16")
    assert settings_right >= MIN_SETTINGS_RIGHT, misses
    assert hair_right >= MIN_HAIR_RIGHT, misses
