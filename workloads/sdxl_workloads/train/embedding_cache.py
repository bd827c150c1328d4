"""Encode prompts and images once, before the loop.

The VAE is always frozen, so each image's latent distribution is computed once (for the image
and, with `randomFlip`, its mirror image, so the flip can be re-drawn every epoch for free).
When the text encoders are not trained, each distinct caption's embeddings are computed once too,
and the text encoders could leave the GPU. This is what makes a training step cost one UNet
forward/backward and nothing else.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from sdxl_workloads import random_draws

# Images per VAE forward while caching: bounds activation memory at 1024 px.
VAE_CHUNK = 4


@dataclass
class PromptEmbedding:
    prompt_embeds: torch.Tensor  # [77, hidden_1 + hidden_2]: both encoders' penultimate layers
    pooled_prompt_embeds: torch.Tensor  # [projection_dim]: text_encoder_2's pooled projection


@dataclass
class LatentDistribution:
    """The VAE posterior of one image, already scaled: sample = mean + std * noise."""

    mean: torch.Tensor  # [4, H/8, W/8]
    std: torch.Tensor

    def sample(self, generator: torch.Generator) -> torch.Tensor:
        noise = random_draws.randn(self.mean.shape, generator=generator, device=self.mean.device, dtype=self.mean.dtype)
        return self.mean + self.std * noise


def tokenize(tokenizer: Any, prompts: Sequence[str]) -> torch.Tensor:
    return tokenizer(
        list(prompts), padding="max_length", max_length=tokenizer.model_max_length,
        truncation=True, return_tensors="pt",
    ).input_ids


def encode_prompts(text_encoders: Sequence[Any], tokenizers: Sequence[Any], prompts: Sequence[str],
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """SDXL's text conditioning, as StableDiffusionXLPipeline.encode_prompt computes it.

    Returns (prompt_embeds [B, 77, D1+D2], pooled [B, P]): the penultimate hidden states of both
    encoders concatenated, and the second encoder's pooled projection.
    """
    hidden: list[torch.Tensor] = []
    pooled = None
    for tokenizer, text_encoder in zip(tokenizers, text_encoders, strict=True):
        ids = tokenize(tokenizer, prompts).to(text_encoder.device)
        out = text_encoder(ids, output_hidden_states=True, return_dict=True)
        hidden.append(out.hidden_states[-2])
        pooled = getattr(out, "text_embeds", None)
    if pooled is None:
        raise ValueError("the second text encoder must have a projection (CLIPTextModelWithProjection)")
    return torch.cat(hidden, dim=-1), pooled


@torch.no_grad()
def cache_prompt_embeddings(text_encoders: Sequence[Any], tokenizers: Sequence[Any],
                            prompts: Iterable[str]) -> dict[str, PromptEmbedding]:
    cache: dict[str, PromptEmbedding] = {}
    for prompt in dict.fromkeys(prompts):  # distinct, in first-seen order
        embeds, pooled = encode_prompts(text_encoders, tokenizers, [prompt])
        cache[prompt] = PromptEmbedding(embeds[0].float(), pooled[0].float())
    return cache


@torch.no_grad()
def cache_latents(vae: Any, pixels: torch.Tensor, device: torch.device | str) -> list[LatentDistribution]:
    """Latent distributions of images given as a [N, 3, H, W] tensor in [-1, 1]."""
    scale = float(vae.config.scaling_factor)
    shift = float(getattr(vae.config, "shift_factor", None) or 0.0)
    result: list[LatentDistribution] = []
    for start in range(0, len(pixels), VAE_CHUNK):
        chunk = pixels[start:start + VAE_CHUNK].to(device, dtype=vae.dtype)
        dist = vae.encode(chunk).latent_dist
        mean = (dist.mean.float() - shift) * scale
        std = dist.std.float() * scale
        result.extend(LatentDistribution(m, s) for m, s in zip(mean, std, strict=True))
    return result
