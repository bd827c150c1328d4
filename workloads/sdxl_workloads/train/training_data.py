"""Training examples in latent space and the order the loop visits them.

An example is an image already encoded by the VAE (embedding_cache), its caption and SDXL's
micro-conditioning. The visiting order is a pure function of (seed, epoch): every epoch gets a
fresh shuffle and fresh random flips (diffusers' script draws them once at start-up), and a
resumed run sees exactly the batches the uninterrupted run would have seen, with no sampler state
to save.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from sdxl_workloads.train.embedding_cache import LatentDistribution


@dataclass
class TrainingExample:
    latents: LatentDistribution
    caption: str
    # SDXL micro-conditioning: (original height, original width, crop top, crop left, target
    # height, target width), as in the SDXL paper and diffusers' `add_time_ids`.
    time_ids: torch.Tensor
    # The mirror image (randomFlip), whose crop's left edge is mirrored too; None without flips.
    flipped_latents: LatentDistribution | None = None
    flipped_time_ids: torch.Tensor | None = None

    def view(self, flip: bool) -> tuple[LatentDistribution, torch.Tensor]:
        if flip and self.flipped_latents is not None and self.flipped_time_ids is not None:
            return self.flipped_latents, self.flipped_time_ids
        return self.latents, self.time_ids


def pixels_from_images(images: Sequence[Image.Image]) -> torch.Tensor:
    """PIL RGB images of one size -> a [N, 3, H, W] float tensor in [-1, 1] (the VAE's input range)."""
    arrays = [np.asarray(image.convert("RGB"), dtype=np.float32) for image in images]
    batch = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2)
    return batch / 127.5 - 1.0


def time_ids_tensor(time_ids: Sequence[int]) -> torch.Tensor:
    return torch.tensor(list(time_ids), dtype=torch.float32)


@dataclass(frozen=True)
class Pick:
    index: int  # which example
    flip: bool  # use the mirror image


def picks_for_micro_batch(num_examples: int, batch_size: int, micro_batch: int, seed: int,
                          random_flip: bool, process_index: int = 0, num_processes: int = 1) -> list[Pick]:
    """The examples of global micro-batch number `micro_batch` for one process.

    Position p in the endless stream of samples lies in epoch p // n; each epoch is a seeded
    permutation with seeded flips. Processes take interleaved micro-batches so each GPU sees
    different images.
    """
    picks: list[Pick] = []
    first = (micro_batch * num_processes + process_index) * batch_size
    for position in range(first, first + batch_size):
        epoch, offset = divmod(position, num_examples)
        order, flips = _epoch_plan(num_examples, seed, epoch, random_flip)
        index = order[offset]
        picks.append(Pick(index=index, flip=flips[index]))
    return picks


_PLAN_CACHE: dict[tuple[int, int, int, bool], tuple[list[int], list[bool]]] = {}


def _epoch_plan(num_examples: int, seed: int, epoch: int, random_flip: bool) -> tuple[list[int], list[bool]]:
    key = (num_examples, seed, epoch, random_flip)
    plan = _PLAN_CACHE.get(key)
    if plan is None:
        rng = random.Random(f"{seed}/{epoch}")
        order = list(range(num_examples))
        rng.shuffle(order)
        flips = [random_flip and rng.random() < 0.5 for _ in range(num_examples)]
        plan = (order, flips)
        if len(_PLAN_CACHE) > 4096:
            _PLAN_CACHE.clear()
        _PLAN_CACHE[key] = plan
    return plan
