"""`sdxl-workload train` writes the quality report into its result's metrics (metrics.quality), the
block the operator copies to status.quality:

- builtin:world: identity, prompt fidelity and class drift read from the pixels of a real, short
  fine-tune (the subject is learned in 150 CPU steps);
- any other base model: CLIP-I/CLIP-T/DINO with the small random models named in spec.quality,
  computed through the same `from_pretrained` calls as the real ones; without them, skipped with
  the field to set, and no number in their place;
- the result with the largest report still fits the kubelet's 4 KiB termination message.
"""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from sdxl_contract import quality_keys
from sdxl_contract.workload_protocol import TERMINATION_MESSAGE_LIMIT
from sdxl_workloads import cli, protocol
from sdxl_workloads.quality.model_unavailable import MAX_REASON_CHARS

TINY_SPEC: dict[str, Any] = {
    "baseModel": "builtin:tiny",
    "instanceImages": "builtin:sample-subject",
    "instancePrompt": "a photo of sks person",
    "training": {"maxSteps": 2, "learningRate": 1e-3, "resolution": 64, "mixedPrecision": "no",
                 "gradientCheckpointing": False, "gradientAccumulation": 1, "checkpointEvery": 0},
    "validation": {"numInferenceSteps": 2, "prompts": ["a photo of sks person", "a photo of sks person on the beach"]},
    "resources": {"gpus": 0, "cpu": "1"},
}

# test_world_finetune's recipe: the world's resolution, fp32, a learning rate and batch that learn
# the subject in 150 steps (identity 1.00 there, measured with the same sampler).
WORLD_SPEC: dict[str, Any] = {
    "baseModel": "builtin:world",
    "instanceImages": "builtin:world-subject",
    "instancePrompt": "a photo of sks person",
    "training": {"maxSteps": 150, "learningRate": 3e-3, "batchSize": 2, "resolution": 64, "mixedPrecision": "no",
                 "gradientCheckpointing": False, "gradientAccumulation": 1, "checkpointEvery": 0},
    "validation": {"numInferenceSteps": 2},
    "resources": {"gpus": 0, "cpu": "1"},
}


@pytest.fixture(autouse=True)
def _one_torch_thread() -> Any:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def train(workdir: Path, spec: dict[str, Any]) -> dict[str, Any]:
    """`sdxl-workload train` in this process; returns the termination message."""
    workdir.mkdir(parents=True, exist_ok=True)
    spec_file = workdir / "spec.yaml"
    spec_file.write_text(yaml.safe_dump(spec))
    termination = workdir / "termination-log"
    with contextlib.redirect_stdout(io.StringIO()):
        code = cli.main(["train", "--spec", str(spec_file), "--output", str(workdir / "out"),
                         "--termination-log", str(termination)])
    text = termination.read_text()
    assert code == 0, text
    assert len(text.encode()) <= TERMINATION_MESSAGE_LIMIT
    result: dict[str, Any] = json.loads(text)
    assert result["status"] == "Succeeded"
    return result


@pytest.mark.slow
def test_a_world_finetune_reports_identity_prompt_fidelity_and_class_drift(tmp_path: Path) -> None:
    """The report's numbers are the pixels' own: the same measures of the LoRA the run wrote, loaded
    into a fresh base pipeline, and of the base model for class drift. (Whether the subject is learned
    is test_world_finetune's question.)"""
    from diffusers import StableDiffusionXLPipeline

    from sdxl_workloads.builtin.world_quality import generate, measure_world_quality, subject_look_share
    from sdxl_workloads.models.references import resolve_model
    from sdxl_workloads.train.quality_measurement import WORLD_IMAGES_PER_PROMPT, WORLD_SAMPLING_STEPS

    quality = train(tmp_path, WORLD_SPEC)["metrics"][quality_keys.QUALITY]
    assert set(quality) == {"images", "identity", "promptFidelity", "classDrift"}
    assert quality["images"] == 5 * WORLD_IMAGES_PER_PROMPT  # four setting prompts and the class prompt

    pipe = StableDiffusionXLPipeline.from_pretrained(resolve_model("builtin:world"))
    pipe.set_progress_bar_config(disable=True)
    base_share = subject_look_share(generate(pipe, "a photo of a person", WORLD_IMAGES_PER_PROMPT, WORLD_SAMPLING_STEPS))
    pipe.load_lora_weights(str(tmp_path / "out" / "lora"))
    after = measure_world_quality(pipe, images_per_prompt=WORLD_IMAGES_PER_PROMPT, steps=WORLD_SAMPLING_STEPS)
    assert quality["identity"] == pytest.approx(after.identity, abs=1e-3)
    assert quality["promptFidelity"] == pytest.approx(after.prompt_fidelity, abs=1e-3)
    assert quality["classDrift"] == pytest.approx(after.class_subject_share - base_share, abs=1e-3)


def test_similarity_metrics_without_models_are_skipped_with_the_field_to_set(tmp_path: Path) -> None:
    quality = train(tmp_path, {**TINY_SPEC, "quality": {"face": False}})["metrics"][quality_keys.QUALITY]
    assert quality == {"images": 2, "skipped": {
        "clipImage": "no model given in spec.quality.clipModel",
        "clipText": "no model given in spec.quality.clipModel",
        "dino": "no model given in spec.quality.dinoModel",
        "face": "spec.quality.face is false",
    }}


def test_a_missing_mounted_model_is_skipped_with_its_reason(tmp_path: Path) -> None:
    spec = {**TINY_SPEC, "quality": {"clipModel": str(tmp_path / "not-mounted"), "face": False}}
    quality = train(tmp_path / "run", spec)["metrics"][quality_keys.QUALITY]
    assert "clipText" not in quality and "clipImage" not in quality
    assert "does not exist (not mounted?)" in quality["skipped"]["clipText"]


def test_similarity_metrics_with_the_models_named_in_the_spec(
        tmp_path: Path, tiny_clip_path: Path, tiny_vit_path: Path) -> None:
    spec = {**TINY_SPEC, "quality": {"clipModel": str(tiny_clip_path), "dinoModel": str(tiny_vit_path)}}
    quality = train(tmp_path, spec)["metrics"][quality_keys.QUALITY]
    assert quality["images"] == 2
    for key in ("clipImage", "clipText", "dino"):
        assert -1 <= quality[key] <= 1
    assert set(quality.get("skipped", {})) <= {"face"}  # tiny 64 px images show no face dlib finds


def test_the_quality_report_can_be_turned_off(tmp_path: Path) -> None:
    assert quality_keys.QUALITY not in train(tmp_path, {**TINY_SPEC, "quality": {"enabled": False}})["metrics"]


def test_the_largest_report_fits_the_termination_message_with_the_rest(tmp_path: Path) -> None:
    # Every similarity metric skipped with a reason cut at its limit (short_reason's "…" included):
    # longer than any report with numbers, and longer than the world's three.
    reason = "x" * (MAX_REASON_CHARS - 1) + "…"
    largest = {"images": 16, "faceDetected": 16,
               "skipped": {key: reason for key in quality_keys.SIMILARITY_METRICS}}
    output = "s3://a-long-bucket-name-for-artifacts/" + "tenant/" * 30
    artifacts = {"lora": output + "lora/pytorch_lora_weights.safetensors",
                 "kohyaLora": output + "lora/a-fine-tune-with-a-long-name_kohya.safetensors",
                 "validationImages": output + "validation"}
    metrics = {"finalLoss": 0.123456, "steps": 100000, "stepsPerSecond": 12.345, "loraSha256": "a" * 64,
               "seconds": 123456.7, "quality": largest}
    termination = tmp_path / "termination-log"
    with contextlib.redirect_stdout(io.StringIO()):
        protocol.report_success(artifacts, metrics, str(termination))
    assert json.loads(termination.read_text())["metrics"] == metrics


def test_a_result_too_large_drops_the_report_before_the_digest(tmp_path: Path) -> None:
    artifacts = {"lora": "s3://bucket/" + "x" * 3000}
    metrics = {"loraSha256": "a" * 64, "quality": {"skipped": {key: "r" * 150 for key in quality_keys.METRICS}}}
    termination = tmp_path / "termination-log"
    with contextlib.redirect_stdout(io.StringIO()):
        protocol.report_success(artifacts, metrics, str(termination))
    assert json.loads(termination.read_text())["metrics"] == {"loraSha256": "a" * 64}
