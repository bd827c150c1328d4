"""Identity fidelity for people: does the face in the generated images belong to the person in the
photos? Scored with dlib's face embeddings, and only where a face is actually found."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

from sdxl_workloads.quality.face_model import FaceModel


@dataclass(frozen=True)
class FaceSimilarity:
    # Mean of 1 - Euclidean distance over every (generated face, instance face) pair: 1 is the same
    # face, above 0.4 is the same person by dlib's 0.6 distance threshold. None when no pair exists.
    similarity: float | None
    detected: int  # how many generated images had a detectable face
    reason: str | None  # why `similarity` is None


def face_similarity(
    model: FaceModel, generated: Sequence[Image.Image], instance: Sequence[Image.Image]
) -> FaceSimilarity:
    instance_faces = _embeddings(model, instance)
    generated_faces = _embeddings(model, generated)
    if not instance_faces:
        return FaceSimilarity(None, len(generated_faces), f"no face found in any of the {len(instance)} instance photos")
    if not generated_faces:
        return FaceSimilarity(None, 0, f"no face detected in any of the {len(generated)} validation images")
    ours, theirs = np.stack(generated_faces), np.stack(instance_faces)
    distances = np.linalg.norm(ours[:, None, :] - theirs[None, :, :], axis=-1)
    return FaceSimilarity(float(1.0 - distances.mean()), len(generated_faces), None)


def _embeddings(model: FaceModel, images: Sequence[Image.Image]) -> list[np.ndarray]:
    return [embedding for embedding in map(model.face_embedding, images) if embedding is not None]
