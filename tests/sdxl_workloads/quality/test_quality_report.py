"""The quality report: every metric it can compute, a reason for every one it cannot, and a JSON
form small enough for the termination message."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from sdxl_workloads.quality.model_unavailable import MAX_REASON_CHARS
from sdxl_workloads.quality.quality_report import (
    METRICS,
    QualityModels,
    QualityReport,
    compute_quality_report,
)

PROMPTS = ["a photo of sks person on a beach", "a photo of sks person in a forest", "a photo of sks person at night"]


@pytest.fixture(scope="module")
def tiny_models(tiny_clip_path: Path, tiny_vit_path: Path) -> QualityModels:
    """Every metric available: the small CLIP and DINO models, dlib's installed face models."""
    return QualityModels(clip=str(tiny_clip_path), dino=str(tiny_vit_path))


@pytest.fixture(scope="module")
def full_report(tiny_models: QualityModels, subject_photos: list[Image.Image]) -> QualityReport:
    return compute_quality_report(subject_photos[:3], PROMPTS, subject_photos[3:], tiny_models)


def test_every_metric_is_computed_when_every_model_is_there(full_report: QualityReport) -> None:
    assert full_report.skipped == {}
    for value in (full_report.clip_image, full_report.clip_text, full_report.dino, full_report.face):
        assert value is not None and -1.0 <= value <= 1.0
    assert full_report.images == 3
    # The sample subject's face is found in most photos, and scores as one person by dlib's rule.
    assert full_report.face_detected is not None and 1 <= full_report.face_detected <= 3
    assert full_report.face is not None and full_report.face > 0.4


def test_the_json_uses_the_status_keys_rounded_to_three_decimals(full_report: QualityReport) -> None:
    report = full_report.to_json()
    assert set(report) == {"clipImage", "clipText", "dino", "face", "faceDetected", "images"}
    assert report["clipImage"] == round(full_report.clip_image or 0.0, 3)
    for key in ("clipImage", "clipText", "dino", "face"):
        assert len(repr(report[key]).split(".")[-1]) <= 3  # type: ignore[literal-required]
    text = full_report.to_json_text()
    assert json.loads(text) == report and " " not in text and len(text.encode()) < 1024


def test_generated_images_identical_to_the_photos_score_one_on_subject_metrics(
    tiny_models: QualityModels, subject_photos: list[Image.Image]
) -> None:
    photo = subject_photos[:1]
    report = compute_quality_report(photo, PROMPTS[:1], photo, tiny_models)
    assert report.clip_image == pytest.approx(1.0, abs=1e-5)
    assert report.dino == pytest.approx(1.0, abs=1e-5)
    assert report.face == pytest.approx(1.0, abs=1e-6)


def test_missing_or_unconfigured_models_are_skipped_with_their_reason(
    tmp_path: Path, subject_photos: list[Image.Image]
) -> None:
    models = QualityModels(clip=str(tmp_path / "clip-not-mounted"), dino=None, face=str(tmp_path / "no-faces"))
    report = compute_quality_report(subject_photos[:3], PROMPTS, subject_photos[3:], models)
    assert (report.clip_image, report.clip_text, report.dino, report.face) == (None, None, None, None)
    assert "clip-not-mounted" in report.skipped["clipImage"] and "does not exist" in report.skipped["clipImage"]
    assert report.skipped["clipText"] == report.skipped["clipImage"]
    assert report.skipped["dino"] == "no DINO model configured"
    assert "shape_predictor_5_face_landmarks.dat" in report.skipped["face"]
    assert report.face_detected is None  # nothing looked for faces
    assert set(report.to_json()) == {"images", "skipped"}


def test_a_broken_model_is_skipped_with_its_error_and_the_others_still_run(
    tmp_path: Path, tiny_clip_path: Path, tiny_models: QualityModels, subject_photos: list[Image.Image]
) -> None:
    broken = tmp_path / "clip"
    shutil.copytree(tiny_clip_path, broken)
    (broken / "model.safetensors").write_bytes(b"not a safetensors file")
    models = QualityModels(clip=str(broken), dino=tiny_models.dino)
    report = compute_quality_report(subject_photos[:3], PROMPTS, subject_photos[3:], models)
    assert report.skipped["clipImage"].startswith("failed: ")
    assert set(report.skipped) == {"clipImage", "clipText"}
    assert report.dino is not None and report.face is not None


def test_without_a_face_in_the_validation_images_the_face_metric_is_absent(
    tiny_models: QualityModels, subject_photos: list[Image.Image], faceless_images: list[Image.Image]
) -> None:
    prompts = ["a landscape"] * len(faceless_images)
    report = compute_quality_report(faceless_images, prompts, subject_photos[:3], tiny_models)
    assert report.face is None and report.face_detected == 0
    assert report.skipped == {"face": f"no face detected in any of the {len(faceless_images)} validation images"}
    assert report.to_json()["faceDetected"] == 0


def test_without_instance_photos_only_prompt_fidelity_is_scored(
    tiny_models: QualityModels, subject_photos: list[Image.Image]
) -> None:
    report = compute_quality_report(subject_photos[:3], PROMPTS, [], tiny_models)
    assert report.clip_text is not None
    assert report.skipped == {metric: "no instance photos" for metric in ("clipImage", "dino", "face")}


def test_without_validation_images_nothing_is_scored() -> None:
    report = compute_quality_report([], [], [], QualityModels())
    assert report.images == 0 and set(report.skipped) == set(METRICS)
    assert report.to_json() == {"images": 0, "skipped": {metric: "no validation images" for metric in METRICS}}


def test_one_prompt_per_validation_image(tiny_models: QualityModels, subject_photos: list[Image.Image]) -> None:
    with pytest.raises(ValueError, match="one prompt per validation image"):
        compute_quality_report(subject_photos[:2], PROMPTS[:1], subject_photos, tiny_models)


def test_the_json_stays_under_one_kib_when_every_metric_is_skipped_with_a_long_reason(
    tmp_path: Path, subject_photos: list[Image.Image]
) -> None:
    deep = tmp_path / ("a-very-long-folder-name-" * 20)
    models = QualityModels(clip=str(deep / "clip"), dino=str(deep / "dino"), face=str(deep / "face"))
    report = compute_quality_report(subject_photos[:1], PROMPTS[:1], subject_photos[1:2], models)
    assert set(report.skipped) == set(METRICS)
    assert all(len(reason) <= MAX_REASON_CHARS and "\n" not in reason for reason in report.skipped.values())
    assert len(report.to_json_text().encode()) < 1024


def test_the_json_of_a_report_omits_what_was_not_computed() -> None:
    report = QualityReport(images=4, clip_text=0.312345, face_detected=0, skipped={"face": "no face"})
    assert report.to_json() == {"images": 4, "clipText": 0.312, "faceDetected": 0, "skipped": {"face": "no face"}}


def test_a_hub_model_that_cannot_be_downloaded_is_skipped(tmp_path: Path, subject_photos: list[Image.Image]) -> None:
    # Offline mode stands for a pod without the hub: the id is looked up in an empty cache only.
    # A separate process, because huggingface_hub reads HF_HUB_OFFLINE once, when it is imported.
    subject_photos[0].save(tmp_path / "photo.png")
    script = (
        "import json, sys\n"
        "from PIL import Image\n"
        "from sdxl_workloads.quality.quality_report import QualityModels, compute_quality_report\n"
        "photo = Image.open(sys.argv[1])\n"
        "models = QualityModels(clip='openai/clip-vit-base-patch32', dino='facebook/dino-vits16', face=None)\n"
        "print(compute_quality_report([photo], ['a photo'], [photo], models).to_json_text())\n"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf-home")}
    run = subprocess.run([sys.executable, "-c", script, str(tmp_path / "photo.png")],
                         env=env, capture_output=True, text=True, timeout=300, check=True)
    skipped = json.loads(run.stdout.strip().splitlines()[-1])["skipped"]
    assert "openai/clip-vit-base-patch32 could not be loaded" in skipped["clipText"]
    assert "facebook/dino-vits16 could not be loaded" in skipped["dino"]
    assert skipped["face"] == "no face model configured"
