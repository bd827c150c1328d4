"""The fine-tune's quality report, computed by the trainer after the final validation images and
written into the result's metrics under `quality` (the operator copies it to status.quality).

- A fine-tune of `builtin:world`: identity, prompt fidelity and class drift read from pixels
  (builtin/world_quality.py). Class drift compares class-prompt images drawn after the fine-tune with
  those the base model drew before the LoRA was attached (`world_baseline`). A few seconds on CPU.
- Any other base model: CLIP-I, CLIP-T, DINO and dlib face similarity of the final validation
  images (quality/quality_report.py), with the models named in spec.quality. A model that is not
  given, not mounted or not reachable is skipped with its reason, never stood in for.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from PIL import Image

from sdxl_contract import quality_keys
from sdxl_workloads import protocol
from sdxl_workloads.spec.finetune_spec import FineTuneSpec

# Images per prompt and sampling steps of the world measures: four setting prompts and the class
# prompt at 4 images each tell a learned subject (identity near 1) from none (near 0) in seconds.
WORLD_IMAGES_PER_PROMPT = 4
WORLD_SAMPLING_STEPS = 10
DECIMALS = 3  # as quality_report.DECIMALS: enough to tell runs apart, short in the termination message


def is_world_model(model_path: str) -> bool:
    """Whether the resolved base model is the embedded `builtin:world` (its package folder)."""
    from sdxl_workloads.builtin.world_pretraining import WORLD_MODEL_DIR

    path = Path(model_path)
    return path.is_dir() and path.resolve() == WORLD_MODEL_DIR.resolve()


def class_prompt_of(spec: FineTuneSpec) -> str:
    from sdxl_workloads.builtin.world_quality import CLASS_PROMPT

    return spec.class_prompt or CLASS_PROMPT


def world_baseline(pipe: Any, spec: FineTuneSpec, autocast: Callable[[], Any] = contextlib.nullcontext) -> float:
    """The share of class-prompt images showing the subject's look, drawn by the base model (no LoRA)."""
    from sdxl_workloads.builtin.world_quality import generate, subject_look_share

    with autocast():
        images = generate(pipe, class_prompt_of(spec), WORLD_IMAGES_PER_PROMPT, WORLD_SAMPLING_STEPS)
    return subject_look_share(images)


def world_report(pipe: Any, spec: FineTuneSpec, baseline: float,
                 autocast: Callable[[], Any] = contextlib.nullcontext) -> dict[str, Any]:
    """identity / promptFidelity / classDrift of the fine-tuned pipeline."""
    from sdxl_workloads.builtin.small_world import SETTINGS
    from sdxl_workloads.builtin.world_quality import measure_world_quality

    with autocast():
        measured = measure_world_quality(pipe, images_per_prompt=WORLD_IMAGES_PER_PROMPT,
                                         steps=WORLD_SAMPLING_STEPS, instance_prompt=spec.instance_prompt,
                                         class_prompt=class_prompt_of(spec))
    return {
        # every setting prompt and the class prompt
        quality_keys.IMAGES: (len(SETTINGS) + 1) * measured.images_per_prompt,
        quality_keys.IDENTITY: round(measured.identity, DECIMALS),
        quality_keys.PROMPT_FIDELITY: round(measured.prompt_fidelity, DECIMALS),
        quality_keys.CLASS_DRIFT: round(measured.class_subject_share - baseline, DECIMALS),
    }


def _model_source(ref: str | None) -> tuple[str | None, str | None]:
    """(what `from_pretrained` loads, or why it cannot) for a spec.quality model reference."""
    if ref is None:
        return None, None
    from sdxl_contract.uris import scheme_of
    from sdxl_workloads.models.references import resolve_model

    if scheme_of(ref) not in ("s3", "pvc"):
        # A hub id or a folder in the image: the loader says what is missing (a folder "not mounted?").
        return ref, None
    try:
        return resolve_model(ref), None
    except protocol.WorkloadError as error:
        return None, error.message


def similarity_report(spec: FineTuneSpec, generated: Sequence[Image.Image], prompts: Sequence[str],
                      instance: Sequence[Image.Image], device: str) -> dict[str, Any]:
    """CLIP-I, CLIP-T, DINO and face similarity of the validation images, per spec.quality."""
    from sdxl_workloads.quality.face_model import INSTALLED_FACE_MODELS
    from sdxl_workloads.quality.model_unavailable import short_reason
    from sdxl_workloads.quality.quality_report import QualityModels, compute_quality_report

    clip, clip_problem = _model_source(spec.quality.clip_model)
    dino, dino_problem = _model_source(spec.quality.dino_model)
    models = QualityModels(clip=clip, dino=dino, face=INSTALLED_FACE_MODELS if spec.quality.face else None,
                           device=device)
    report = compute_quality_report(generated, prompts, instance, models)
    skipped = dict(report.skipped)
    # A skip for want of a model names the spec field to set.
    for metrics, field_name, ref, problem in (
            ((quality_keys.CLIP_IMAGE, quality_keys.CLIP_TEXT), "clipModel", spec.quality.clip_model, clip_problem),
            ((quality_keys.DINO,), "dinoModel", spec.quality.dino_model, dino_problem)):
        reason = (f"spec.quality.{field_name}: {problem}" if problem
                  else None if ref else f"no model given in spec.quality.{field_name}")
        for metric in metrics:
            if reason and metric in skipped:
                skipped[metric] = reason
    if not spec.quality.face and quality_keys.FACE in skipped:
        skipped[quality_keys.FACE] = "spec.quality.face is false"
    return dict(dataclasses.replace(report, skipped={k: short_reason(v) for k, v in skipped.items()}).to_json())


def timed(measure: Callable[[], dict[str, Any]], what: str) -> dict[str, Any]:
    """Run a measurement and log how long it took (its cost is part of every run)."""
    started = time.monotonic()
    report = measure()
    protocol.emit_event("log", message=f"quality report ({what}) in {time.monotonic() - started:.1f} s: {report}")
    return report
