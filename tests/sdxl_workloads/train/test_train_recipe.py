"""The pieces of the recipe, checked against their definitions."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import torch
from diffusers import DDPMScheduler

from sdxl_workloads.train.optimizers import build_lr_scheduler, build_optimizer
from sdxl_workloads.train.training_data import picks_for_micro_batch
from sdxl_workloads.train.training_loop import noise_target, snr_loss_weights


def _scheduler(prediction_type: str) -> Any:
    return DDPMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
                         prediction_type=prediction_type)


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
def test_min_snr_weights_follow_the_paper(prediction_type: str) -> None:
    scheduler = _scheduler(prediction_type)
    timesteps = torch.tensor([0, 10, 200, 500, 999])
    alphas = scheduler.alphas_cumprod[timesteps]
    snr = alphas / (1 - alphas)
    gamma = 5.0
    expected = torch.minimum(snr, torch.full_like(snr, gamma))
    expected = expected / (snr + 1) if prediction_type == "v_prediction" else expected / snr
    weights = snr_loss_weights(scheduler, timesteps, gamma, prediction_type)
    torch.testing.assert_close(weights, expected.float())
    # Low-noise steps (huge SNR) are down-weighted; high-noise steps keep weight ~1 (epsilon).
    assert weights[0] < 0.01
    if prediction_type == "epsilon":
        assert weights[-1] == pytest.approx(1.0)


def test_the_v_prediction_target_is_the_velocity() -> None:
    scheduler = _scheduler("v_prediction")
    latents, noise = torch.randn(2, 4, 8, 8), torch.randn(2, 4, 8, 8)
    timesteps = torch.tensor([100, 800])
    alpha = scheduler.alphas_cumprod[timesteps].sqrt().view(-1, 1, 1, 1)
    sigma = (1 - scheduler.alphas_cumprod[timesteps]).sqrt().view(-1, 1, 1, 1)
    torch.testing.assert_close(noise_target(scheduler, latents, noise, timesteps), alpha * noise - sigma * latents)
    assert noise_target(_scheduler("epsilon"), latents, noise, timesteps) is noise


def test_each_epoch_visits_every_image_once_with_flips_redrawn() -> None:
    n, batch = 10, 3
    picks = [p for micro in range(20) for p in picks_for_micro_batch(n, batch, micro, seed=1, random_flip=True)]
    epochs = [picks[i:i + n] for i in range(0, 50, n)]
    for epoch in epochs:
        assert sorted(p.index for p in epoch) == list(range(n))
    orders = {tuple(p.index for p in epoch) for epoch in epochs}
    flips = {tuple(sorted((p.index, p.flip) for p in epoch)) for epoch in epochs}
    assert len(orders) == len(epochs) and len(flips) > 1  # reshuffled and re-flipped
    assert 0 < sum(p.flip for p in picks) < len(picks)
    assert not any(p.flip for micro in range(5) for p in picks_for_micro_batch(n, batch, micro, 1, False))


def test_processes_see_different_images() -> None:
    n, batch, processes = 8, 2, 2
    seen = Counter()
    for micro in range(4):  # two epochs' worth across both processes
        a = picks_for_micro_batch(n, batch, micro, 3, False, process_index=0, num_processes=processes)
        b = picks_for_micro_batch(n, batch, micro, 3, False, process_index=1, num_processes=processes)
        assert not {p.index for p in a} & {p.index for p in b}
        seen.update(p.index for p in a + b)
    assert set(seen.values()) == {2}


@pytest.mark.parametrize(("name", "warmup", "expected"), [
    ("constant", 0, [1.0, 1.0, 1.0, 1.0]),
    # A warmup asked for with `constant` is honoured (diffusers' `constant` ignores it).
    ("constant", 2, [0.0, 0.5, 1.0, 1.0]),
    ("constant_with_warmup", 2, [0.0, 0.5, 1.0, 1.0]),
    ("linear", 0, [1.0, 0.75, 0.5, 0.25]),
])
def test_learning_rate_schedules(name: str, warmup: int, expected: list[float]) -> None:
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = build_optimizer("adamw", [{"params": [param], "lr": 1.0, "weight_decay": 0.0}])
    schedule = build_lr_scheduler(name, optimizer, warmup, total_steps=4)
    seen = []
    for _ in range(4):
        seen.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedule.step()
    assert seen == pytest.approx(expected)


def test_prodigy_trains(tmp_path: Path, kit: Any) -> None:
    result = kit.run_train(tmp_path, kit.spec_with({"training": {"optimizer": "prodigy", "learningRate": 1.0,
                                                                 "maxSteps": 3}}))
    assert result.exit_code == 0, result.stdout_lines[-5:]


def test_bf16_mixed_precision_and_gradient_checkpointing_train(tmp_path: Path, kit: Any) -> None:
    result = kit.run_train(tmp_path, kit.spec_with({"training": {
        "mixedPrecision": "bf16", "gradientCheckpointing": True, "maxSteps": 3, "gradientAccumulation": 2}}))
    assert result.exit_code == 0, result.stdout_lines[-5:]
    assert result.result is not None and result.result["metrics"]["finalLoss"] > 0
    from safetensors.torch import load_file

    weights = load_file(str(result.output / "lora" / "pytorch_lora_weights.safetensors"))
    assert {t.dtype for t in weights.values()} == {torch.float32}  # LoRA kept in fp32
    assert all(torch.isfinite(t).all() for t in weights.values())


def test_a_separate_vae_is_loaded_from_spec_vae(tmp_path: Path, kit: Any, tiny_model_path: Path) -> None:
    import shutil

    vae_dir = tmp_path / "fp16-safe-vae"
    shutil.copytree(tiny_model_path / "vae", vae_dir)
    result = kit.run_train(tmp_path, kit.spec_with({"vae": str(vae_dir), "training": {"maxSteps": 2}}))
    assert result.exit_code == 0, result.stdout_lines[-5:]
    missing = kit.run_train(tmp_path, kit.spec_with({"vae": str(tmp_path / "no-vae")}), name="missing")
    assert missing.exit_code == 2 and missing.result is not None
    assert "spec.vae" in missing.result["message"] and "no-vae" in missing.result["message"]
