"""Load the frozen parts of an SDXL base model for training.

The same `from_pretrained(path, subfolder=...)` calls load the real SDXL 1.0 and the built-in
tiny model, so everything the trainer does is exercised by the tests on CPU.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from sdxl_workloads.protocol import WorkloadError


@dataclass
class BaseModel:
    """The components of an SDXL pipeline the trainer needs, already on their device and dtype."""

    tokenizer_one: Any
    tokenizer_two: Any
    text_encoder_one: Any  # CLIPTextModel
    text_encoder_two: Any  # CLIPTextModelWithProjection (its pooled output conditions the UNet)
    vae: Any  # AutoencoderKL; fp32 unless an fp16-safe VAE was given
    unet: Any  # UNet2DConditionModel
    noise_scheduler: Any  # DDPMScheduler with the model's training noise schedule
    inference_scheduler_config: dict[str, Any]  # the pipeline's own scheduler, for sampling

    @property
    def prediction_type(self) -> str:
        return str(self.noise_scheduler.config.prediction_type)


def torch_dtype(mixed_precision: str) -> torch.dtype:
    """The dtype frozen weights are kept in for a `training.mixedPrecision` value."""
    return {"no": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[mixed_precision]


def load_base_model(
    model_path: str,
    *,
    revision: str | None = None,
    vae_path: str | None = None,
    weight_dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
) -> BaseModel:
    """Load tokenizers, text encoders, VAE, UNet and noise schedule from a diffusers folder or hub id.

    The frozen UNet and text encoders are loaded in `weight_dtype` (the LoRA weights stay fp32,
    see lora_setup). The VAE stays fp32: SDXL's original VAE overflows in fp16 and gives NaN
    latents (diffusers#4398); a VAE given in `spec.vae` (e.g. madebyollin/sdxl-vae-fp16-fix) is
    fp16-safe and is loaded in `weight_dtype` with the rest.

    Loading in the target dtype (not loading fp32 and casting) keeps host memory at the bf16 size
    and means the GPU never holds the fp32 copy: moving fp32 modules to the GPU before casting
    peaks at about 14 GB for SDXL, against 7 GB this way.
    """
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
    from transformers import AutoTokenizer, CLIPTextModel, CLIPTextModelWithProjection

    kwargs: dict[str, Any] = {"revision": revision} if revision else {}
    # transformers names the argument `dtype` (since 4.56; `torch_dtype` is deprecated), diffusers
    # still `torch_dtype`.
    te_dtype = {"dtype": weight_dtype}
    try:
        tokenizer_one = AutoTokenizer.from_pretrained(model_path, subfolder="tokenizer", use_fast=False, **kwargs)
        tokenizer_two = AutoTokenizer.from_pretrained(model_path, subfolder="tokenizer_2", use_fast=False, **kwargs)
        text_encoder_one = CLIPTextModel.from_pretrained(model_path, subfolder="text_encoder", **te_dtype, **kwargs)
        text_encoder_two = CLIPTextModelWithProjection.from_pretrained(
            model_path, subfolder="text_encoder_2", **te_dtype, **kwargs
        )
        if vae_path:
            vae = AutoencoderKL.from_pretrained(vae_path, torch_dtype=weight_dtype)
        else:
            vae = AutoencoderKL.from_pretrained(model_path, subfolder="vae", torch_dtype=torch.float32, **kwargs)
        unet = UNet2DConditionModel.from_pretrained(model_path, subfolder="unet", torch_dtype=weight_dtype, **kwargs)
        # Training noise is added with DDPM's forward process whatever sampler the pipeline uses.
        noise_scheduler = DDPMScheduler.from_pretrained(model_path, subfolder="scheduler", **kwargs)
        inference_scheduler_config = dict(noise_scheduler.load_config(model_path, subfolder="scheduler", **kwargs))
    except (OSError, ValueError) as err:
        raise WorkloadError(
            "InvalidInput",
            f"spec.baseModel: cannot load an SDXL pipeline from {model_path!r} ({err}); "
            "give a diffusers-format SDXL folder, a Hugging Face model id, or builtin:tiny",
        ) from err

    for module in (text_encoder_one, text_encoder_two, vae, unet):
        module.requires_grad_(False)
        module.eval()
    for module in (unet, text_encoder_one, text_encoder_two, vae):
        module.to(device)
    return BaseModel(
        tokenizer_one=tokenizer_one, tokenizer_two=tokenizer_two,
        text_encoder_one=text_encoder_one, text_encoder_two=text_encoder_two,
        vae=vae, unet=unet, noise_scheduler=noise_scheduler,
        inference_scheduler_config=inference_scheduler_config,
    )


def build_pipeline(model: BaseModel, unet: Any | None = None, text_encoder_one: Any | None = None,
                   text_encoder_two: Any | None = None) -> Any:
    """A StableDiffusionXLPipeline sharing the loaded components (no copies), for sampling.

    The unet/text encoders may be passed unwrapped from accelerate so the LoRA being trained is
    the one used.
    """
    import diffusers

    scheduler_class = model.inference_scheduler_config.get("_class_name", "EulerDiscreteScheduler")
    # An unknown sampler name in the config falls back to SDXL's default sampler.
    scheduler_type = getattr(diffusers, scheduler_class, diffusers.EulerDiscreteScheduler)
    scheduler = scheduler_type.from_config(model.inference_scheduler_config)
    pipe = diffusers.StableDiffusionXLPipeline(
        vae=model.vae,
        text_encoder=text_encoder_one if text_encoder_one is not None else model.text_encoder_one,
        text_encoder_2=text_encoder_two if text_encoder_two is not None else model.text_encoder_two,
        tokenizer=model.tokenizer_one,
        tokenizer_2=model.tokenizer_two,
        unet=unet if unet is not None else model.unet,
        scheduler=scheduler,
        add_watermarker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe
