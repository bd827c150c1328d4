"""Subject fidelity: how much the generated images look like the real photos of the subject
(DreamBooth's CLIP-I with a CLIP model, DINO with a DINO model)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import torch
from PIL import Image

from sdxl_workloads.quality.pairwise_cosine import mean_pairwise_cosine


class ImageEmbedder(Protocol):
    def embed_images(self, images: Sequence[Image.Image]) -> torch.Tensor: ...


def subject_similarity(
    embedder: ImageEmbedder, generated: Sequence[Image.Image], instance: Sequence[Image.Image]
) -> float:
    """Mean cosine of every (generated image, instance photo) pair of embeddings, in [-1, 1]."""
    return mean_pairwise_cosine(embedder.embed_images(generated), embedder.embed_images(instance))
