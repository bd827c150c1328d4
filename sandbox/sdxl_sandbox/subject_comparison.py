"""Base model against fine-tune on one server: what the demo shows of a `builtin:world` fine-tune.

A deployment that serves fine-tunes as adapters (spec.fineTunes) answers a request without an
adapter with the base model and one naming the adapter with the fine-tune, from the same weights
in the same process: the honest comparison. For each prompt in new settings ("a photo of sks
person on the beach", ... on the moon) and the class prompt ("a photo of a person") both are
drawn with the same seeds; the images make the contact sheet, and the quality measures of
world_quality.py read them (unless the fine-tune's status.quality already reports them).
"""

from __future__ import annotations

import io
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from sdxl_sandbox.image_request import generate_images
from sdxl_workloads.builtin.world_quality import (
    CLASS_PROMPT,
    class_drift,
    identity,
    prompt_fidelity,
    subject_prompts,
)

WORLD_MODEL = "builtin:world"
COLUMN_TITLES = ("base model", "fine-tuned")
# Sampling as world_quality.measure_world_quality does, so the numbers compare with the trainer's.
SAMPLING = {"num_inference_steps": 10, "guidance_scale": 5.0}
IMAGES_PER_PROMPT = 4
# status.quality's keys for the three measures, and how the report names them.
QUALITY_KEYS = (("identity", "identity"), ("promptFidelity", "prompt fidelity"), ("classDrift", "class drift"))


@dataclass(frozen=True)
class Comparison:
    """The images of each prompt from both models, and which setting each subject prompt asks for."""

    settings: dict[str, str]  # subject prompt -> setting
    class_prompt: str
    base: dict[str, list[bytes]]  # prompt -> PNGs, seed, seed + 1, ...
    tuned: dict[str, list[bytes]]

    def prompts(self) -> list[str]:
        return [*self.settings, self.class_prompt]

    def rows(self) -> list[tuple[str, list[bytes]]]:
        """The contact sheet's rows: each prompt's first image from the base model and the fine-tune."""
        return [(prompt, [self.base[prompt][0], self.tuned[prompt][0]]) for prompt in self.prompts()]


def compares_world_subject(deployment: Mapping[str, Any]) -> str | None:
    """The fine-tune to compare with the base model: a deployment's first adapter when it serves
    fine-tunes of `builtin:world` as adapters, else None."""
    spec = deployment.get("spec") or {}
    names = spec.get("fineTunes") or []
    return str(names[0]) if names and spec.get("baseModel") == WORLD_MODEL else None


def world_model_is_pretrained() -> bool:
    """Whether the builtin:world weights installed here had the whole pretraining (their
    provenance.json), not a short build (`sdxl-workload world-model` with fewer steps) that has not
    learned the world yet and draws noise whatever the fine-tune."""
    from sdxl_workloads.builtin.world_pretraining import WORLD_MODEL_DIR, WorldPretrainingConfig

    provenance = Path(WORLD_MODEL_DIR) / "provenance.json"
    if not provenance.is_file():
        return False
    built = json.loads(provenance.read_text()).get("config") or {}
    full = asdict(WorldPretrainingConfig())
    return all(built.get(key, 0) >= full[key] for key in ("vae_steps", "unet_steps"))


def adapter_ready(deployment: Mapping[str, Any], adapter: str) -> bool:
    """Whether the server pods serve `adapter` (status.adapters[].ready)."""
    adapters = (deployment.get("status") or {}).get("adapters") or []
    return any(entry.get("name") == adapter and entry.get("ready") for entry in adapters)


async def draw_both(url: str, adapter: str, instance_prompt: str, *, images_per_prompt: int = IMAGES_PER_PROMPT,
                    seed: int = 0) -> Comparison:
    """Each prompt drawn by the base model (no adapter) and by the fine-tune, with the same seeds."""
    settings = {prompt: setting for setting, prompt in subject_prompts(instance_prompt).items()}
    base: dict[str, list[bytes]] = {}
    tuned: dict[str, list[bytes]] = {}
    for prompt in [*settings, CLASS_PROMPT]:
        base[prompt] = await generate_images(url, prompt, num_images=images_per_prompt, seed=seed, extra=SAMPLING)
        tuned[prompt] = await generate_images(url, prompt, num_images=images_per_prompt, seed=seed,
                                              extra={**SAMPLING, "adapter": adapter})
    return Comparison(settings=settings, class_prompt=CLASS_PROMPT, base=base, tuned=tuned)


def _pixels(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))


def measured_quality(comparison: Comparison) -> dict[str, dict[str, float]]:
    """{"base": {...}, "tuned": {...}} with identity and prompt fidelity of each model, and the
    class drift (the fine-tune's share of the subject's look in class images minus the base's)."""

    def by_setting(images: Mapping[str, list[bytes]]) -> dict[str, list[np.ndarray]]:
        return {setting: [_pixels(png) for png in images[prompt]] for prompt, setting in comparison.settings.items()}

    base, tuned = by_setting(comparison.base), by_setting(comparison.tuned)
    drift = class_drift([_pixels(png) for png in comparison.base[comparison.class_prompt]],
                        [_pixels(png) for png in comparison.tuned[comparison.class_prompt]])
    return {
        "base": {"identity": identity(base), "promptFidelity": prompt_fidelity(base)},
        "tuned": {"identity": identity(tuned), "promptFidelity": prompt_fidelity(tuned), "classDrift": drift},
    }


def quality_report(finetune: str, status_quality: Mapping[str, Any] | None,
                   measured: Mapping[str, Mapping[str, float]], images_per_prompt: int) -> list[str]:
    """The report's lines: the three measures, from status.quality when the fine-tune has them,
    else from the served images; the base model's identity and prompt fidelity beside them."""
    reported = status_quality or {}
    from_status = all(isinstance(reported.get(key), int | float) for key, _ in QUALITY_KEYS)
    source = "status.quality" if from_status else f"the served images, {images_per_prompt} per prompt"
    values = reported if from_status else measured["tuned"]
    lines = [f"quality of {finetune} (from {source}):"]
    for key, label in QUALITY_KEYS:
        value = float(values[key])
        before = measured["base"].get(key)
        if key == "classDrift":
            note = "more class-prompt images showing the subject than the base model drew (0 = no drift)"
            lines.append(f"  {label:<16} {value:+.2f}   {note}")
        else:
            lines.append(f"  {label:<16} {value:.2f}   (base model: {before:.2f})")
    if not world_model_is_pretrained():
        lines.append("  note: builtin:world here is a short build, not the pretrained model (see its "
                     "provenance.json; `make world-model` pretrains it): expect noise and no learning")
    return lines
