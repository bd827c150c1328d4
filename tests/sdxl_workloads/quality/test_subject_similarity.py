"""CLIP-I and DINO: generated images against the instance photos, through models loaded with
`from_pretrained` (small random ones: the tests assert behaviour, never a random model's numbers)."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from sdxl_workloads.quality.clip_model import ClipModel
from sdxl_workloads.quality.dino_model import DinoModel
from sdxl_workloads.quality.model_unavailable import ModelUnavailable
from sdxl_workloads.quality.subject_similarity import subject_similarity


@pytest.fixture(scope="module", params=["clip", "dino-vit", "dinov2"])
def embedder(request: pytest.FixtureRequest) -> ClipModel | DinoModel:
    if request.param == "clip":
        return ClipModel.load(str(request.getfixturevalue("tiny_clip_path")))
    fixture = "tiny_vit_path" if request.param == "dino-vit" else "tiny_dinov2_path"
    return DinoModel.load(str(request.getfixturevalue(fixture)))


def test_dino_loads_either_architecture_through_automodel(tiny_vit_path: Path, tiny_dinov2_path: Path) -> None:
    assert type(DinoModel.load(str(tiny_vit_path)).model).__name__ == "ViTModel"
    assert type(DinoModel.load(str(tiny_dinov2_path)).model).__name__ == "Dinov2Model"


def test_identical_images_score_one(embedder: ClipModel | DinoModel, subject_photos: list[Image.Image]) -> None:
    photo = subject_photos[:1]
    assert subject_similarity(embedder, photo, photo) == pytest.approx(1.0, abs=1e-5)


def test_the_subject_itself_scores_higher_than_unrelated_images(
    embedder: ClipModel | DinoModel, subject_photos: list[Image.Image], faceless_images: list[Image.Image]
) -> None:
    # A random model has no notion of "the same subject in another photo", so the photo itself
    # stands for a perfect fine-tune; any model must rank it above images without the subject.
    photo = subject_photos[:1]
    unrelated = subject_similarity(embedder, faceless_images, photo)
    assert -1.0 <= unrelated < subject_similarity(embedder, photo, photo) - 1e-4


def test_the_score_is_symmetric_and_independent_of_batching(
    embedder: ClipModel | DinoModel, subject_photos: list[Image.Image], faceless_images: list[Image.Image]
) -> None:
    # Ten photos span two embedding batches; one at a time must give the same embeddings.
    forward = subject_similarity(embedder, subject_photos, faceless_images)
    backward = subject_similarity(embedder, faceless_images, subject_photos)
    assert forward == pytest.approx(backward, abs=1e-5)
    one_by_one = [subject_similarity(embedder, [photo], faceless_images) for photo in subject_photos]
    assert forward == pytest.approx(sum(one_by_one) / len(one_by_one), abs=1e-5)


def test_an_exif_rotated_photo_is_scored_upright(
    embedder: ClipModel | DinoModel, subject_photos: list[Image.Image], tmp_path: Path
) -> None:
    # As a phone stores a portrait: pixels turned sideways, orientation 6 = "rotate 90° clockwise".
    upright = subject_photos[0]
    exif = Image.Exif()
    exif[0x0112] = 6
    upright.transpose(Image.Transpose.ROTATE_90).save(tmp_path / "phone.png", exif=exif)
    with Image.open(tmp_path / "phone.png") as stored:
        assert subject_similarity(embedder, [stored], [upright]) == pytest.approx(1.0, abs=1e-5)
        sideways = stored.copy()
        sideways.getexif().clear()
        assert subject_similarity(embedder, [sideways], [upright]) < 1.0 - 1e-4


@pytest.mark.parametrize("load", [ClipModel.load, DinoModel.load])
def test_a_missing_model_folder_is_unavailable_with_its_path(load, tmp_path: Path) -> None:
    missing = tmp_path / "not-mounted"
    with pytest.raises(ModelUnavailable, match=r"not-mounted.*does not exist"):
        load(str(missing))


@pytest.mark.parametrize("load", [ClipModel.load, DinoModel.load])
def test_a_folder_without_a_model_is_unavailable_with_the_loader_error(load, tmp_path: Path) -> None:
    with pytest.raises(ModelUnavailable, match="could not be loaded") as raised:
        load(str(tmp_path))
    assert str(tmp_path) in raised.value.reason and "\n" not in raised.value.reason
