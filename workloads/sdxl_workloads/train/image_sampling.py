"""Sample one image from an SDXL pipeline whose parts are in different dtypes.

While training, the frozen UNet and text encoders run in bf16/fp16 and the VAE stays fp32
(SDXL's VAE overflows in fp16, diffusers#4398). `StableDiffusionXLPipeline.__call__` hands the
UNet's half-precision latents straight to that fp32 VAE, which fails (`Input type (c10::BFloat16)
and bias type (float) should be the same`); under autocast it would run the VAE in fp16 instead,
which overflows. So the denoising runs under the caller's autocast and the decode runs with
autocast off, in the VAE's own dtype, as the pipeline would decode a model saved in one dtype.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import torch
from PIL import Image

from sdxl_workloads import random_draws


@torch.no_grad()
def sample_image(pipe: Any, prompt: str, *, resolution: int, num_inference_steps: int, guidance_scale: float,
                 seed: int, autocast: Callable[[], Any] = contextlib.nullcontext) -> Image.Image:
    """One image for `prompt` from `seed` (reproducible whatever the device, see random_draws)."""
    generator = random_draws.pipeline_generator(seed)
    with autocast():
        latents = pipe(prompt, height=resolution, width=resolution, num_inference_steps=num_inference_steps,
                       guidance_scale=guidance_scale, generator=generator, output_type="latent").images
    return decode_latents(pipe, latents)[0]


@torch.no_grad()
def decode_latents(pipe: Any, latents: torch.Tensor) -> list[Image.Image]:
    """The pipeline's own decode (scaling, optional latents mean/std), in the VAE's dtype."""
    vae = pipe.vae
    config = vae.config
    latents = latents.to(vae.device, vae.dtype)
    mean = getattr(config, "latents_mean", None)
    std = getattr(config, "latents_std", None)
    if mean is not None and std is not None:
        mean_t = torch.tensor(mean).view(1, -1, 1, 1).to(latents)
        std_t = torch.tensor(std).view(1, -1, 1, 1).to(latents)
        latents = latents * std_t / config.scaling_factor + mean_t
    else:
        latents = latents / config.scaling_factor
    device_type = latents.device.type if latents.device.type in ("cuda", "cpu") else "cpu"
    with torch.autocast(device_type, enabled=False):
        image = vae.decode(latents, return_dict=False)[0]
    return list(pipe.image_processor.postprocess(image.float(), output_type="pil"))
