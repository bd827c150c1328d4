"""bench/gpu_check.py's CPU-checkable parts: the full-size configs are SDXL 1.0's architecture, the
spec it trains with is valid, and without CUDA it says so and stops. (The GPU runs themselves need a
GPU; `make gpu-check` runs them where one is.)"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "gpu_check.py"


@pytest.fixture(scope="module")
def gpu_check() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_check"] = module
    spec.loader.exec_module(module)
    return module


def test_the_configs_build_sdxl_1_0_at_its_published_size(gpu_check: ModuleType) -> None:
    """Parameter counts of SDXL 1.0 base's parts, built without memory (meta tensors)."""
    from accelerate import init_empty_weights
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    from sdxl_workloads.builtin.tiny_model import build_tokenizer

    gpu_check.check_sdxl_configs()
    tokenizer = build_tokenizer()
    with init_empty_weights():
        unet = UNet2DConditionModel(**gpu_check.SDXL_UNET)
        vae = AutoencoderKL(**gpu_check.SDXL_VAE)
        te1 = CLIPTextModel(gpu_check.text_encoder_config(gpu_check.SDXL_TEXT_ENCODER, tokenizer))
        te2 = CLIPTextModelWithProjection(gpu_check.text_encoder_config(gpu_check.SDXL_TEXT_ENCODER_2, tokenizer))

    def millions(model: object) -> int:
        return round(sum(p.numel() for p in model.parameters()) / 1e6)  # type: ignore[attr-defined]

    # stabilityai/stable-diffusion-xl-base-1.0: 2,567 M UNet, 123 M + 695 M text encoders, 84 M VAE.
    assert millions(unet) == 2567
    assert millions(te1) == 123
    assert millions(te2) == 695
    assert millions(vae) == 84


def test_an_inconsistent_config_is_refused(gpu_check: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(gpu_check.SDXL_UNET, "cross_attention_dim", 1024)
    with pytest.raises(ValueError, match="cross_attention_dim"):
        gpu_check.check_sdxl_configs()


def test_the_training_spec_is_the_trainers_defaults_at_full_size(gpu_check: ModuleType, tmp_path: Path) -> None:
    from sdxl_workloads.spec.finetune_spec import load_finetune_spec

    manifest = gpu_check.train_spec(tmp_path, steps=30, resolution=1024)
    training = load_finetune_spec(manifest["spec"]).training
    assert (training.resolution, training.mixed_precision, training.gradient_checkpointing, training.max_steps,
            training.rank, training.snr_gamma) == (1024, "bf16", True, 30, 4, 5.0)


def test_steady_rate_leaves_out_the_first_step(gpu_check: ModuleType) -> None:
    events = [(0.0, {"event": "progress", "step": 1}), (10.0, {"event": "progress", "step": 2}),
              (12.0, {"event": "progress", "step": 4}), (15.0, {"event": "progress", "step": 7})]
    assert gpu_check.steady_seconds_per_step(events) == pytest.approx(1.0)
    assert gpu_check.steady_seconds_per_step(events[:2]) is None


def test_without_cuda_it_says_so_and_stops(gpu_check: ModuleType, monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    code = gpu_check.main(["--work-dir", str(tmp_path / "work"), "--json", str(tmp_path / "out.json")])
    assert code == gpu_check.NO_CUDA_EXIT
    assert "gpu-check: not run: no CUDA device" in capsys.readouterr().err
    assert not (tmp_path / "work").exists()  # nothing built
