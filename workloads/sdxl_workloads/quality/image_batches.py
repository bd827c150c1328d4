"""Embedding many images a few at a time, so a large set of photos never needs one huge batch."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import TypeVar

import torch

T = TypeVar("T")

# Validation sets are a handful of images and instance sets 10-20 photos; 8 at a time keeps the
# activations of a ViT-L at 224 px well under a GiB while still batching.
EMBEDDING_BATCH_SIZE = 8


def batches(items: Sequence[T], size: int = EMBEDDING_BATCH_SIZE) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def embed_in_batches(items: Sequence[T], embed: Callable[[Sequence[T]], torch.Tensor]) -> torch.Tensor:
    """`embed` applied batch by batch, the rows concatenated on the CPU in float32."""
    if not items:
        raise ValueError("nothing to embed")
    return torch.cat([embed(batch).detach().float().cpu() for batch in batches(items)])
