"""Pretrain `builtin:world`: the `world`-size SDXL-architecture pipeline, taught the small world.

`builtin:tiny` has random weights, so a fine-tune of it shows nothing; this model has seen
thousands of captioned pictures of small_world.py, so a fine-tune on `builtin:world-subject`
can be judged from pixels (world_quality.py). The recipe, with our own code:

1. the VAE learns to reconstruct world pictures (MSE + a small KL term), and its scaling factor
   is set so latents have unit variance, as SDXL's was;
2. a pool of pictures is encoded once; the UNet and both text encoders then learn together to
   predict the noise (epsilon, SDXL's DDPM schedule) from captions that name some attributes; one
   caption in ten is dropped to zero embeddings, which is what the pipeline feeds the unconditional
   branch of classifier-free guidance (`force_zeros_for_empty_prompt`).

Deterministic given the seed on one CPU thread. The result is shipped in the package
(builtin/world_model/, with `provenance.json` saying how it was made); rebuild it with
`make world-model` or `python -m sdxl_workloads.builtin.world_pretraining --out DIR`.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from sdxl_workloads import random_draws
from sdxl_workloads.builtin.small_world import WORLD_RESOLUTION, Scene, caption, draw_scene, sample_scene

# The shipped model's folder, inside the package.
WORLD_MODEL_DIR = Path(__file__).resolve().parent / "world_model"
PROVENANCE_FILE = "provenance.json"


@dataclass(frozen=True)
class WorldPretrainingConfig:
    """Everything that decides the weights; recorded in provenance.json."""

    seed: int = 0  # scenes, captions, noise and initial weights all derive from it
    vae_steps: int = 2000  # VAE reconstruction steps
    vae_batch_size: int = 8
    vae_learning_rate: float = 1e-3
    vae_kl_weight: float = 1e-6  # just enough to keep the latent distribution bounded
    pool_size: int = 6000  # pictures encoded once for the denoiser
    unet_steps: int = 6000  # denoiser steps (UNet and text encoders together)
    unet_batch_size: int = 16
    unet_learning_rate: float = 1e-3
    text_learning_rate: float = 3e-4
    warmup_steps: int = 200
    unconditional_fraction: float = 0.1  # captions replaced by zero embeddings (for guidance)
    threads: int = 1  # torch threads; one is deterministic and leaves the machine to others


Log = Callable[[str], None]


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def pixels_of(scenes: Sequence[Scene]) -> torch.Tensor:
    """[B, 3, H, W] in [-1, 1], as the VAE expects."""
    array = np.stack([np.asarray(draw_scene(scene), dtype=np.float32) for scene in scenes])
    return torch.from_numpy(array).permute(0, 3, 1, 2) / 127.5 - 1.0


def _lr_factor(step: int, total: int, warmup: int) -> float:
    """Linear warm-up, then cosine decay to a tenth: the last steps settle the weights."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress))


def train_vae(vae: Any, config: WorldPretrainingConfig, rng: np.random.Generator, log: Log = _stderr) -> None:
    """Reconstruction of fresh world pictures every step."""
    optimizer = torch.optim.AdamW(vae.parameters(), lr=config.vae_learning_rate, weight_decay=0.0)
    vae.train()
    started = time.monotonic()
    for step in range(config.vae_steps):
        for group in optimizer.param_groups:
            group["lr"] = config.vae_learning_rate * _lr_factor(step, config.vae_steps, config.warmup_steps)
        pixels = pixels_of([sample_scene(rng) for _ in range(config.vae_batch_size)])
        posterior = vae.encode(pixels).latent_dist
        reconstruction = vae.decode(posterior.sample()).sample
        mse = F.mse_loss(reconstruction, pixels)
        loss = mse + config.vae_kl_weight * posterior.kl().mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
        optimizer.step()
        if step % 250 == 0 or step == config.vae_steps - 1:
            log(f"vae step {step}/{config.vae_steps} mse {mse.item():.5f} ({time.monotonic() - started:.0f} s)")
    vae.eval()


@torch.no_grad()
def encode_pool(vae: Any, scenes: Sequence[Scene], batch_size: int = 64) -> torch.Tensor:
    """Posterior means of the pictures (unscaled), [N, 4, h, w]."""
    means = [vae.encode(pixels_of(scenes[i:i + batch_size])).latent_dist.mean
             for i in range(0, len(scenes), batch_size)]
    return torch.cat(means)


def encode_captions(text_encoders: Sequence[Any], tokenizers: Sequence[Any], captions: Sequence[str],
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """SDXL's conditioning as StableDiffusionXLPipeline.encode_prompt computes it (with gradients):
    both encoders' penultimate hidden states side by side, and the second one's pooled projection."""
    hidden, pooled = [], None
    for tokenizer, encoder in zip(tokenizers, text_encoders, strict=True):
        ids = tokenizer(list(captions), padding="max_length", max_length=tokenizer.model_max_length,
                        truncation=True, return_tensors="pt").input_ids
        out = encoder(ids, output_hidden_states=True, return_dict=True)
        hidden.append(out.hidden_states[-2])
        pooled = getattr(out, "text_embeds", None)
    if pooled is None:
        raise ValueError("the second text encoder must have a projection (CLIPTextModelWithProjection)")
    return torch.cat(hidden, dim=-1), pooled


def train_denoiser(pipe: Any, latents: torch.Tensor, scenes: Sequence[Scene], config: WorldPretrainingConfig,
                   rng: np.random.Generator, log: Log = _stderr) -> None:
    """The UNet and both text encoders learn epsilon prediction on the scaled latents."""
    from diffusers import DDPMScheduler

    scheduler = DDPMScheduler.from_config(pipe.scheduler.config)
    text_encoders = [pipe.text_encoder, pipe.text_encoder_2]
    tokenizers = [pipe.tokenizer, pipe.tokenizer_2]
    text_parameters = [p for encoder in text_encoders for p in encoder.parameters()]
    optimizer = torch.optim.AdamW([
        {"params": list(pipe.unet.parameters()), "lr": config.unet_learning_rate, "base": config.unet_learning_rate},
        {"params": text_parameters, "lr": config.text_learning_rate, "base": config.text_learning_rate},
    ], weight_decay=1e-4)
    for model in (pipe.unet, *text_encoders):
        model.train()
    size = WORLD_RESOLUTION
    time_ids = torch.tensor([[size, size, 0, 0, size, size]], dtype=torch.float32)
    generator = random_draws.training_generator("cpu", config.seed)
    started = time.monotonic()
    running = 0.0
    for step in range(config.unet_steps):
        factor = _lr_factor(step, config.unet_steps, config.warmup_steps)
        for group in optimizer.param_groups:
            group["lr"] = group["base"] * factor
        picks = rng.integers(0, len(scenes), config.unet_batch_size)
        batch = latents[torch.from_numpy(picks)]
        captions = [caption(scenes[i], rng) for i in picks]
        embeds, pooled = encode_captions(text_encoders, tokenizers, captions)
        # Dropped captions: zero embeddings, exactly what the pipeline's unconditional branch sees.
        keep = torch.from_numpy(rng.random(len(picks)) >= config.unconditional_fraction).float()
        embeds = embeds * keep[:, None, None]
        pooled = pooled * keep[:, None]
        noise = random_draws.randn(batch.shape, generator=generator, device="cpu")
        timesteps = random_draws.randint(0, scheduler.config.num_train_timesteps, (len(picks),), generator=generator,
                                         device="cpu")
        noisy = scheduler.add_noise(batch, noise, timesteps)
        prediction = pipe.unet(noisy, timesteps, embeds, added_cond_kwargs={
            "text_embeds": pooled, "time_ids": time_ids.expand(len(picks), -1)}, return_dict=False)[0]
        loss = F.mse_loss(prediction, noise)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_([*pipe.unet.parameters(), *text_parameters], 1.0)
        optimizer.step()
        running = 0.98 * running + 0.02 * loss.item() if step else loss.item()
        if step % 500 == 0 or step == config.unet_steps - 1:
            log(f"unet step {step}/{config.unet_steps} loss {running:.4f} ({time.monotonic() - started:.0f} s)")
    for model in (pipe.unet, *text_encoders):
        model.eval()


def pretrain_world_pipeline(config: WorldPretrainingConfig, log: Log = _stderr) -> Any:
    """The `world`-size pipeline with pretrained weights (in memory)."""
    from sdxl_workloads.builtin.tiny_model import build_tiny_pipeline

    torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    rng = np.random.default_rng([config.seed, 1])
    pipe = build_tiny_pipeline(size="world", seed=config.seed)
    train_vae(pipe.vae, config, rng, log)
    pool = [sample_scene(rng) for _ in range(config.pool_size)]
    means = encode_pool(pipe.vae, pool)
    # SDXL's latents are scaled to about unit variance; ours get the factor that does the same.
    scaling_factor = float(1.0 / means.std())
    pipe.vae.register_to_config(scaling_factor=scaling_factor)
    log(f"vae scaling factor {scaling_factor:.5f}")
    train_denoiser(pipe, means * scaling_factor, pool, config, rng, log)
    return pipe


def library_versions() -> dict[str, str]:
    import diffusers
    import transformers

    return {"python": platform.python_version(), "torch": torch.__version__, "diffusers": diffusers.__version__,
            "transformers": transformers.__version__, "numpy": np.__version__}


def write_world_model(out: str | Path, config: WorldPretrainingConfig, log: Log = _stderr) -> Path:
    """Pretrain and save in diffusers layout, with tokenizer files and provenance.json."""
    from sdxl_workloads.builtin.tiny_model import _prefix_text_encoder_keys, _write_bpe_files, build_bpe_vocab

    out = Path(out)
    started = time.monotonic()
    pipe = pretrain_world_pipeline(config, log)
    wall = time.monotonic() - started
    pipe.save_pretrained(out, safe_serialization=True)
    _prefix_text_encoder_keys(out / "text_encoder" / "model.safetensors")
    vocab, merges = build_bpe_vocab()
    for folder in ("tokenizer", "tokenizer_2"):
        _write_bpe_files(out / folder, vocab, merges)
    provenance = {
        "what": "builtin:world, an SDXL-architecture pipeline (size 'world' of tiny_model.py) pretrained on "
                "small_world.py's captioned scenes",
        "rebuild": "make world-model (or: python -m sdxl_workloads.builtin.world_pretraining --out DIR)",
        "config": asdict(config),
        "wallSeconds": round(wall, 1),
        "machine": f"{platform.machine()}, {config.threads} torch thread(s)",
        "libraries": library_versions(),
    }
    (out / PROVENANCE_FILE).write_text(json.dumps(provenance, indent=2) + "\n")
    log(f"wrote {out} in {wall:.0f} s")
    return out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    defaults = WorldPretrainingConfig()
    parser.add_argument("--out", required=True, help="folder to write the pipeline to (new or empty)")
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--vae-steps", type=int, default=defaults.vae_steps)
    parser.add_argument("--unet-steps", type=int, default=defaults.unet_steps)
    parser.add_argument("--pool-size", type=int, default=defaults.pool_size)


def run(args: argparse.Namespace) -> int:
    """`sdxl-workload world-model --out DIR`: pretrain builtin:world into DIR."""
    out = Path(args.out)
    if out.exists() and any(out.iterdir()):
        from sdxl_workloads.protocol import WorkloadError

        raise WorkloadError("InvalidInput", f"{out} exists and is not empty; choose a new or empty folder")
    config = WorldPretrainingConfig(seed=args.seed, vae_steps=args.vae_steps, unet_steps=args.unet_steps,
                                    pool_size=args.pool_size)
    from sdxl_workloads.storage.atomic_write import write_then_rename

    write_then_rename(out, lambda staging: write_world_model(staging, config), folder=True)
    print(f"wrote builtin:world (seed {config.seed}) to {out}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sdxl_workloads.builtin.world_pretraining",
                                     description=run.__doc__)
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
