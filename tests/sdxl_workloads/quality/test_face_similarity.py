"""Face similarity with dlib's real detector and ResNet face model (the face-recognition-models
weights), on the builtin sample subject, whose drawn face dlib's HOG detector finds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sdxl_workloads.quality.face_model import (
    RECOGNITION_MODEL_FILE,
    SHAPE_PREDICTOR_FILE,
    FaceModel,
    installed_face_models_dir,
)
from sdxl_workloads.quality.face_similarity import face_similarity
from sdxl_workloads.quality.model_unavailable import ModelUnavailable


@pytest.fixture(scope="module")
def face_model() -> FaceModel:
    return FaceModel.load()


@pytest.fixture(scope="module")
def subject_faces(face_model: FaceModel, subject_photos: list[Image.Image]) -> list[Image.Image]:
    """The sample photos in which dlib finds the face (most of them: a few are too tilted or small)."""
    found = [photo for photo in subject_photos if face_model.face_embedding(photo) is not None]
    assert len(found) >= len(subject_photos) // 2, "the sample subject's face should be detectable"
    return found


def stretched(image: Image.Image, factor: float) -> Image.Image:
    """The same picture with the face made `factor` times taller: other proportions, another face
    to dlib, which aligns faces by a similarity transform and so cannot undo the stretch."""
    return image.resize((image.width, round(image.height * factor)))


def test_the_embedding_is_dlibs_128_numbers(face_model: FaceModel, subject_faces: list[Image.Image]) -> None:
    embedding = face_model.face_embedding(subject_faces[0])
    assert embedding is not None and embedding.shape == (128,) and np.isfinite(embedding).all()


def test_the_same_photo_is_the_same_face(face_model: FaceModel, subject_faces: list[Image.Image]) -> None:
    result = face_similarity(face_model, subject_faces[:1], subject_faces[:1])
    assert result.similarity == pytest.approx(1.0, abs=1e-6)
    assert (result.detected, result.reason) == (1, None)


def test_the_subject_in_other_photos_beats_a_face_of_other_proportions(
    face_model: FaceModel, subject_faces: list[Image.Image]
) -> None:
    instance, generated = subject_faces[:3], subject_faces[3:]
    same_person = face_similarity(face_model, generated, instance)
    other_face = face_similarity(face_model, [stretched(subject_faces[0], 1.8)], instance)
    assert other_face.detected == 1, "the stretched face must still be found for the comparison to mean anything"
    assert same_person.similarity is not None and other_face.similarity is not None
    assert same_person.similarity > other_face.similarity
    # dlib's own rule: one person's faces lie within 0.6 of each other, i.e. similarity above 0.4.
    assert same_person.similarity > 0.4


def test_images_without_a_face_are_counted_and_no_score_is_made_up(
    face_model: FaceModel, subject_faces: list[Image.Image], faceless_images: list[Image.Image]
) -> None:
    result = face_similarity(face_model, faceless_images, subject_faces[:2])
    assert result.similarity is None and result.detected == 0
    assert result.reason == f"no face detected in any of the {len(faceless_images)} validation images"


def test_only_generated_images_with_a_face_are_scored(
    face_model: FaceModel, subject_faces: list[Image.Image], faceless_images: list[Image.Image]
) -> None:
    instance = subject_faces[:2]
    mixed = face_similarity(face_model, [subject_faces[2], *faceless_images], instance)
    faces_only = face_similarity(face_model, [subject_faces[2]], instance)
    assert mixed.detected == 1
    assert mixed.similarity == pytest.approx(faces_only.similarity)


def test_instance_photos_without_a_face_leave_nothing_to_compare(
    face_model: FaceModel, subject_faces: list[Image.Image], faceless_images: list[Image.Image]
) -> None:
    result = face_similarity(face_model, subject_faces[:2], faceless_images)
    assert result.similarity is None and result.detected == 2
    assert result.reason is not None and "instance photos" in result.reason


def test_the_installed_weights_are_found_without_importing_their_package() -> None:
    # The package's __init__ imports pkg_resources, which current setuptools no longer has.
    folder = installed_face_models_dir()
    assert (folder / SHAPE_PREDICTOR_FILE).is_file() and (folder / RECOGNITION_MODEL_FILE).is_file()


def test_a_folder_with_the_two_files_loads(tmp_path: Path, face_model: FaceModel, subject_faces: list[Image.Image]) -> None:
    for name in (SHAPE_PREDICTOR_FILE, RECOGNITION_MODEL_FILE):
        (tmp_path / name).symlink_to(installed_face_models_dir() / name)
    embedding = FaceModel.load(str(tmp_path)).face_embedding(subject_faces[0])
    assert embedding is not None
    assert np.allclose(embedding, face_model.face_embedding(subject_faces[0]))


def test_a_folder_missing_a_file_is_unavailable_with_the_file_named(tmp_path: Path) -> None:
    (tmp_path / SHAPE_PREDICTOR_FILE).symlink_to(installed_face_models_dir() / SHAPE_PREDICTOR_FILE)
    with pytest.raises(ModelUnavailable, match=RECOGNITION_MODEL_FILE):
        FaceModel.load(str(tmp_path))


def test_a_corrupt_weights_file_is_unavailable_not_a_crash(tmp_path: Path) -> None:
    (tmp_path / SHAPE_PREDICTOR_FILE).write_bytes(b"not a dlib model")
    (tmp_path / RECOGNITION_MODEL_FILE).write_bytes(b"not a dlib model")
    with pytest.raises(ModelUnavailable, match="could not be loaded"):
        FaceModel.load(str(tmp_path))
