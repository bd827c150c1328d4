"""Cosine similarities between two sets of embeddings, the arithmetic of every quality metric."""

from __future__ import annotations

import torch


def unit_rows(embeddings: torch.Tensor) -> torch.Tensor:
    """Each row scaled to length 1 (in float32, so half-precision embeddings do not lose the sum)."""
    return torch.nn.functional.normalize(embeddings.float(), dim=-1)


def mean_pairwise_cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    """The mean cosine over every pair (row of `a`, row of `b`): how alike two sets are as a whole,
    as DreamBooth's CLIP-I and DINO compare each generated image with each real photo."""
    if a.shape[0] == 0 or b.shape[0] == 0:
        raise ValueError("mean_pairwise_cosine needs at least one embedding on each side")
    return float((unit_rows(a) @ unit_rows(b).T).mean())


def mean_matched_cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    """The mean cosine of row i of `a` with row i of `b` (an image with its own prompt)."""
    if a.shape[0] != b.shape[0] or a.shape[0] == 0:
        raise ValueError(f"mean_matched_cosine needs as many rows on each side, got {a.shape[0]} and {b.shape[0]}")
    return float((unit_rows(a) * unit_rows(b)).sum(dim=-1).mean())
