"""The optimizer (`training.optimizer`) and learning-rate schedule (`training.lrScheduler`)."""

from __future__ import annotations

from typing import Any

import torch

from sdxl_workloads.protocol import WorkloadError

OPTIMIZERS = ("adamw", "adamw8bit", "prodigy")
LR_SCHEDULERS = ("constant", "constant_with_warmup", "linear", "cosine")

# diffusers' SDXL DreamBooth defaults: betas (0.9, 0.999), eps 1e-8 (the weight decays are
# spec.training.weightDecay / textEncoderWeightDecay, defaulted by the CRD).
ADAM_BETAS = (0.9, 0.999)
ADAM_EPSILON = 1e-8
# Prodigy estimates the step size itself; its authors and the diffusers blog use beta2 0.99,
# weight decay 0.01, bias correction and safeguarded warmup for diffusion LoRA.
PRODIGY_BETAS = (0.9, 0.99)
PRODIGY_WEIGHT_DECAY = 0.01


def check_optimizer_available(name: str, device: torch.device) -> None:
    """Fail before any work when the optimizer cannot run here (e.g. 8-bit AdamW without CUDA)."""
    if name not in OPTIMIZERS:
        raise WorkloadError(
            "InvalidInput",
            f"spec.training.optimizer: unknown optimizer {name!r}; choose one of {', '.join(OPTIMIZERS)}",
        )
    if name == "adamw8bit":
        if device.type != "cuda":
            raise WorkloadError(
                "InvalidInput",
                f"spec.training.optimizer: adamw8bit (bitsandbytes) needs an NVIDIA GPU, but this run is on "
                f"{device.type}; use optimizer adamw or prodigy, or run on a GPU node (resources.gpus >= 1)",
            )
        try:
            import bitsandbytes  # noqa: F401
        except ImportError as err:
            raise WorkloadError(
                "InvalidInput",
                "spec.training.optimizer: adamw8bit needs the bitsandbytes package, which this image lacks; "
                "use optimizer adamw or an image with bitsandbytes installed",
            ) from err
    if name == "prodigy":
        try:
            import prodigyopt  # noqa: F401
        except ImportError as err:
            raise WorkloadError(
                "InvalidInput",
                "spec.training.optimizer: prodigy needs the prodigyopt package, which this image lacks; "
                "use optimizer adamw",
            ) from err


def build_optimizer(name: str, param_groups: list[dict[str, Any]]) -> torch.optim.Optimizer:
    """param_groups: [{"params": [...], "lr": ..., "weight_decay": ...}, ...] (UNet first)."""
    if name == "adamw":
        # foreach: one fused kernel per tensor list instead of a Python loop over many small LoRA
        # matrices (torch only picks it by default for CUDA tensors).
        return torch.optim.AdamW(param_groups, betas=ADAM_BETAS, eps=ADAM_EPSILON, foreach=True)
    if name == "adamw8bit":
        import bitsandbytes as bnb

        optimizer: torch.optim.Optimizer = bnb.optim.AdamW8bit(param_groups, betas=ADAM_BETAS, eps=ADAM_EPSILON)
        return optimizer
    if name == "prodigy":
        from prodigyopt import Prodigy

        for group in param_groups:
            group["weight_decay"] = PRODIGY_WEIGHT_DECAY
        return Prodigy(param_groups, betas=PRODIGY_BETAS, use_bias_correction=True,
                       safeguard_warmup=True, decouple=True)
    raise WorkloadError("InvalidInput", f"spec.training.optimizer: unknown optimizer {name!r}")


def build_lr_scheduler(name: str, optimizer: torch.optim.Optimizer, warmup_steps: int,
                       total_steps: int) -> Any:
    """diffusers' schedules; `constant` ignores warmup there, so warmup > 0 upgrades it to
    `constant_with_warmup` (a warmup the user asked for is never silently dropped)."""
    from diffusers.optimization import get_scheduler

    if name not in LR_SCHEDULERS:
        raise WorkloadError(
            "InvalidInput",
            f"spec.training.lrScheduler: unknown schedule {name!r}; choose one of {', '.join(LR_SCHEDULERS)}",
        )
    if name == "constant" and warmup_steps > 0:
        name = "constant_with_warmup"
    return get_scheduler(name, optimizer=optimizer, num_warmup_steps=warmup_steps,
                         num_training_steps=total_steps)
