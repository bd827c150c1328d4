"""The DreamBooth-LoRA denoising loop.

One optimizer step = `gradientAccumulation` micro-batches of `batchSize` instance examples (plus
as many class examples with prior preservation). Each micro-batch: sample latents from the cached
VAE posterior, add noise (with optional offset noise) at random timesteps, predict it with the
UNet conditioned on the prompt embeddings and SDXL's time ids, and take the (Min-SNR weighted)
MSE against the noise or, for v-prediction models, the velocity.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from sdxl_workloads import protocol, random_draws
from sdxl_workloads.train.embedding_cache import PromptEmbedding, encode_prompts
from sdxl_workloads.train.graceful_stop import TrainingStopped
from sdxl_workloads.train.model_loading import BaseModel
from sdxl_workloads.train.training_data import TrainingExample, picks_for_micro_batch

# Seconds between progress lines: the operator keeps only the last one, and a line per step at
# tens of steps per second (the tiny model) would only flood the pod log.
PROGRESS_INTERVAL_SECONDS = 2.0
# finalLoss is the mean over this many last steps: a single step's loss depends mostly on the
# timestep drawn.
FINAL_LOSS_WINDOW = 20


@dataclass
class LoopSettings:
    """The hyperparameters the loop reads (from spec.training and spec.priorPreservation)."""

    max_steps: int
    batch_size: int
    gradient_accumulation: int
    snr_gamma: float  # 0 = plain MSE
    noise_offset: float
    max_grad_norm: float
    seed: int
    random_flip: bool
    train_text_encoder: bool
    prior_loss_weight: float  # used only when class examples are given


@dataclass
class TrainingRun:
    """Everything the loop touches, built by the stages in train_command."""

    accelerator: Any
    model: BaseModel
    unet: Any  # prepared by accelerate, LoRA attached
    text_encoders: list[Any]  # the two text encoders (prepared when trained)
    optimizer: Any
    lr_scheduler: Any
    trainable_params: list[torch.nn.Parameter]
    settings: LoopSettings
    instance_examples: list[TrainingExample]
    class_examples: list[TrainingExample] = field(default_factory=list)
    # caption -> embeddings; None when the text encoders are trained (then encoded every step)
    prompt_cache: dict[str, PromptEmbedding] | None = None
    weight_dtype: torch.dtype = torch.float32  # the frozen weights' dtype (training.mixedPrecision)
    # The noise stream, on the accelerator's device (random_draws.training_generator).
    generator: torch.Generator = field(default_factory=lambda: random_draws.training_generator("cpu", 0))
    step: int = 0  # optimizer steps done
    losses: list[float] = field(default_factory=list)  # loss of every optimizer step so far


StepHook = Callable[[TrainingRun], None]


def snr_loss_weights(noise_scheduler: Any, timesteps: torch.Tensor, snr_gamma: float,
                     prediction_type: str) -> torch.Tensor:
    """Min-SNR-gamma weights (Hang et al. 2023), as in diffusers' scripts.

    For epsilon prediction: min(SNR, gamma) / SNR; for v-prediction: min(SNR, gamma) / (SNR + 1)
    (the v target already carries a factor SNR + 1 relative to epsilon).
    """
    from diffusers.training_utils import compute_snr

    snr = compute_snr(noise_scheduler, timesteps)
    clipped = torch.clamp(snr, max=snr_gamma)
    if prediction_type == "v_prediction":
        return clipped / (snr + 1)
    return clipped / snr


def noise_target(noise_scheduler: Any, latents: torch.Tensor, noise: torch.Tensor,
                 timesteps: torch.Tensor) -> torch.Tensor:
    prediction_type = noise_scheduler.config.prediction_type
    if prediction_type == "epsilon":
        return noise
    if prediction_type == "v_prediction":
        return noise_scheduler.get_velocity(latents, noise, timesteps)
    raise ValueError(f"unsupported prediction type {prediction_type!r} in the model's scheduler config")


def predict_noise(unet: Any, noisy_latents: torch.Tensor, timesteps: torch.Tensor, prompt_embeds: torch.Tensor,
                  pooled_prompt_embeds: torch.Tensor, time_ids: torch.Tensor,
                  dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The UNet's output; inputs go in the frozen weights' dtype, as the pipeline feeds them."""
    return unet(
        noisy_latents.to(dtype), timesteps, prompt_embeds.to(dtype),
        added_cond_kwargs={"text_embeds": pooled_prompt_embeds.to(dtype), "time_ids": time_ids.to(dtype)},
        return_dict=False,
    )[0]


def denoising_loss(unet: Any, noise_scheduler: Any, latents: torch.Tensor, noise: torch.Tensor,
                   timesteps: torch.Tensor, prompt_embeds: torch.Tensor, pooled_prompt_embeds: torch.Tensor,
                   time_ids: torch.Tensor, snr_gamma: float = 0.0,
                   dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Per-example loss [B]: the (Min-SNR weighted) MSE of the UNet's prediction."""
    noisy = noise_scheduler.add_noise(latents, noise, timesteps)
    prediction = predict_noise(unet, noisy, timesteps, prompt_embeds, pooled_prompt_embeds, time_ids, dtype)
    target = noise_target(noise_scheduler, latents, noise, timesteps)
    per_example = F.mse_loss(prediction.float(), target.float(), reduction="none").mean(dim=(1, 2, 3))
    if snr_gamma > 0:
        per_example = per_example * snr_loss_weights(
            noise_scheduler, timesteps, snr_gamma, noise_scheduler.config.prediction_type)
    return per_example


def _micro_batch(run: TrainingRun, examples: Sequence[TrainingExample], micro_index: int,
                 seed: int) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    settings = run.settings
    picks = picks_for_micro_batch(
        len(examples), settings.batch_size, micro_index, seed, settings.random_flip,
        run.accelerator.process_index, run.accelerator.num_processes,
    )
    latents, ids, captions = [], [], []
    for pick in picks:
        example = examples[pick.index]
        dist, example_time_ids = example.view(pick.flip)
        latents.append(dist.sample(run.generator))
        ids.append(example_time_ids)
        captions.append(example.caption)
    return torch.stack(latents), torch.stack(ids), captions


def _text_conditioning(run: TrainingRun, captions: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    if run.prompt_cache is not None:
        embeds = torch.stack([run.prompt_cache[c].prompt_embeds for c in captions])
        pooled = torch.stack([run.prompt_cache[c].pooled_prompt_embeds for c in captions])
        return embeds, pooled
    tokenizers = [run.model.tokenizer_one, run.model.tokenizer_two]
    return encode_prompts(run.text_encoders, tokenizers, captions)


def micro_step_loss(run: TrainingRun, micro_index: int) -> torch.Tensor:
    """The loss of one micro-batch (instance examples, then class examples if any)."""
    settings = run.settings
    device = run.accelerator.device
    latents, ids, captions = _micro_batch(run, run.instance_examples, micro_index, settings.seed)
    num_instance = len(latents)
    if run.class_examples:
        # An independent stream for class images: its own seed, so instance order is unchanged.
        c_latents, c_ids, c_captions = _micro_batch(run, run.class_examples, micro_index, settings.seed + 7919)
        latents, ids, captions = torch.cat([latents, c_latents]), torch.cat([ids, c_ids]), captions + c_captions
    latents = latents.to(device)
    # Drawn on the latents' device from the run's generator, which lives there (random_draws).
    noise = random_draws.randn(latents.shape, generator=run.generator, device=device)
    if settings.noise_offset > 0:
        # Offset noise (Guttenberg 2023): a per-channel constant lets the model shift overall
        # brightness, so very dark or bright images become reachable.
        offset = random_draws.randn((latents.shape[0], latents.shape[1], 1, 1), generator=run.generator, device=device)
        noise = noise + settings.noise_offset * offset
    num_train_timesteps = run.model.noise_scheduler.config.num_train_timesteps
    timesteps = random_draws.randint(0, num_train_timesteps, (latents.shape[0],), generator=run.generator,
                                     device=device)
    with run.accelerator.autocast():
        embeds, pooled = _text_conditioning(run, captions)
        per_example = denoising_loss(
            run.unet, run.model.noise_scheduler, latents, noise, timesteps,
            embeds.to(device), pooled.to(device), ids.to(device), 0.0, run.weight_dtype,
        )
    instance_loss = per_example[:num_instance]
    if settings.snr_gamma > 0:
        instance_loss = instance_loss * snr_loss_weights(
            run.model.noise_scheduler, timesteps[:num_instance], settings.snr_gamma, run.model.prediction_type)
    loss = instance_loss.mean()
    if run.class_examples:
        # DreamBooth's prior-preservation loss: the class images keep the base model's idea of
        # the class (plain MSE, as in diffusers' script).
        loss = loss + settings.prior_loss_weight * per_example[num_instance:].mean()
    return loss


def train(run: TrainingRun, after_step: Sequence[StepHook] = (),
          should_stop: Callable[[], bool] = lambda: False) -> None:
    """Run optimizer steps from `run.step` to `settings.max_steps`, calling hooks after each.

    After each step (and its hooks) `should_stop` is asked; when any process says yes, every
    process leaves the loop at that same step by raising graceful_stop.TrainingStopped.
    """
    settings = run.settings
    accelerator = run.accelerator
    models = [run.unet, *(run.text_encoders if settings.train_text_encoder else [])]
    for model in models:
        model.train()
    started = time.monotonic()
    first_step = run.step
    last_report = 0.0
    bar = _progress_bar(settings.max_steps, run.step, accelerator.is_main_process)
    while run.step < settings.max_steps:
        step_loss = 0.0
        for micro in range(settings.gradient_accumulation):
            micro_index = run.step * settings.gradient_accumulation + micro
            with accelerator.accumulate(*models):
                loss = micro_step_loss(run, micro_index)
                accelerator.backward(loss)
                if accelerator.sync_gradients and settings.max_grad_norm > 0:
                    accelerator.clip_grad_norm_(run.trainable_params, settings.max_grad_norm)
                run.optimizer.step()
                run.optimizer.zero_grad(set_to_none=True)
            step_loss += loss.detach().item() / settings.gradient_accumulation
        if accelerator.num_processes > 1:  # report the loss of the whole global batch
            step_loss = float(accelerator.reduce(torch.tensor(step_loss, device=accelerator.device), "mean"))
        run.lr_scheduler.step()
        if not math.isfinite(step_loss):
            raise protocol.WorkloadError(
                "FineTuneFailed",
                f"the loss became {step_loss} at step {run.step + 1}; lower training.learningRate, "
                "use mixedPrecision bf16 or an fp16-safe VAE (spec.vae)",
            )
        run.step += 1
        run.losses.append(step_loss)
        now = time.monotonic()
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{step_loss:.4f}")
        if accelerator.is_main_process and (
            run.step in (first_step + 1, settings.max_steps) or now - last_report >= PROGRESS_INTERVAL_SECONDS
        ):
            per_step = (now - started) / (run.step - first_step)
            protocol.emit_progress(run.step, settings.max_steps, loss=recent_loss(run),
                                   eta_seconds=per_step * (settings.max_steps - run.step))
            last_report = now
        for hook in after_step:
            hook(run)
        if _any_process(accelerator, should_stop()) and run.step < settings.max_steps:
            if bar is not None:
                bar.close()
            raise TrainingStopped(run.step)
    if bar is not None:
        bar.close()


def _any_process(accelerator: Any, flag: bool) -> bool:
    """`flag` or'ed over all processes: each must leave the loop at the same step, or the others
    would wait forever in the next step's gradient all-reduce."""
    if accelerator.num_processes <= 1:
        return flag
    return bool(accelerator.reduce(torch.tensor(float(flag), device=accelerator.device), "sum") > 0)


def recent_loss(run: TrainingRun, window: int = FINAL_LOSS_WINDOW) -> float:
    tail = run.losses[-window:]
    return sum(tail) / len(tail) if tail else float("nan")


def _progress_bar(total: int, initial: int, is_main: bool) -> Any:
    """A tqdm bar for people at a terminal; pods (stdout not a TTY) get the JSON lines only."""
    if not is_main or not sys.stdout.isatty():
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc="training", unit="step", file=sys.stderr)
