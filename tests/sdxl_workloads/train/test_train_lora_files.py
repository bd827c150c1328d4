"""The LoRA files a run writes load the public way and mean what was trained."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from safetensors import safe_open


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, kit: Any) -> Any:
    """One short run with alpha != rank and a learning rate high enough to change the images."""
    spec = kit.spec_with({"training": {"maxSteps": 20, "learningRate": 1e-2, "rank": 4, "alpha": 8}})
    result = kit.run_train(tmp_path_factory.mktemp("lora-files"), spec)
    assert result.exit_code == 0, result.stdout_lines[-5:]
    return result


def test_the_layout_is_the_documented_one(trained: Any) -> None:
    out = trained.output
    files = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert files == [
        "lora/pytorch_lora_weights.safetensors",
        "lora/run-out_kohya.safetensors",
        "training_args.json",
        "validation/step-000020.png",
    ]


def test_the_lora_loads_with_load_lora_weights_and_changes_the_images(trained: Any, kit: Any,
                                                                       tiny_model_path: Path) -> None:
    base = kit.generate(kit.load_pipeline(tiny_model_path))
    with_lora = kit.generate(kit.load_pipeline(tiny_model_path, trained.output / "lora"))
    assert np.abs(with_lora - base).mean() > 1e-3


def test_fused_and_unfused_lora_give_the_same_images(trained: Any, kit: Any, tiny_model_path: Path) -> None:
    pipe = kit.load_pipeline(tiny_model_path, trained.output / "lora")
    unfused = kit.generate(pipe)
    pipe.fuse_lora()
    pipe.unload_lora_weights()  # the fused weights stay in the UNet
    fused = kit.generate(pipe)
    np.testing.assert_allclose(fused, unfused, atol=1e-4)


def test_the_kohya_copy_has_kohya_keys_and_loads_to_the_same_images(trained: Any, kit: Any,
                                                                     tiny_model_path: Path) -> None:
    kohya = trained.output / "lora" / "run-out_kohya.safetensors"
    with safe_open(str(kohya), "pt") as handle:
        keys = list(handle.keys())
        alphas = {float(handle.get_tensor(k)) for k in keys if k.endswith(".alpha")}
    assert keys and all(k.startswith("lora_unet_") for k in keys)
    assert {k.rsplit(".", 2)[-2] for k in keys if not k.endswith(".alpha")} == {"lora_down", "lora_up"}
    # alpha = rank: the trained alpha / rank scale is folded into the weights (see lora_export).
    assert alphas == {4.0}

    diffusers_images = kit.generate(kit.load_pipeline(tiny_model_path, trained.output / "lora"))
    kohya_images = kit.generate(kit.load_pipeline(tiny_model_path, kohya.parent, weight_name=kohya.name))
    np.testing.assert_allclose(kohya_images, diffusers_images, atol=1e-5)


def test_training_args_record_the_resolved_spec_and_the_digest(trained: Any) -> None:
    args = json.loads((trained.output / "training_args.json").read_text())
    lora = trained.output / "lora" / "pytorch_lora_weights.safetensors"
    assert args["spec"]["training"]["alpha"] == 8
    assert args["spec"]["training"]["snrGamma"] == 5.0  # a default, filled in
    assert args["metrics"]["loraSha256"] == hashlib.sha256(lora.read_bytes()).hexdigest()
    assert set(args["versions"]) >= {"torch", "diffusers", "peft"}


@pytest.mark.parametrize("targets", [
    ["to_q", "to_k", "to_v", "to_out.0"],
    # Conv layers: diffusers' state-dict converter leaves them in another key format than the
    # attention layers, which load_lora_weights then half ignores; the export must not.
    ["to_q", "to_k", "to_v", "to_out.0", "conv_in", "conv_out"],
])
def test_an_exported_lora_reproduces_the_trained_unet_exactly(tmp_path: Path, kit: Any, tiny_model_path: Path,
                                                              targets: list[str]) -> None:
    from sdxl_workloads.train.lora_export import save_diffusers_lora, save_kohya_lora
    from sdxl_workloads.train.lora_setup import add_unet_lora

    trained_pipe = kit.load_pipeline(tiny_model_path)
    unet = trained_pipe.unet
    torch.manual_seed(0)
    add_unet_lora(unet, rank=4, alpha=12, target_modules=targets)
    with torch.no_grad():  # stand-in for training: LoRA B starts at zero, so give it weights
        for name, param in unet.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.05)
    lora_file = save_diffusers_lora(tmp_path / "lora", unet)
    save_kohya_lora(lora_file, tmp_path / "lora" / "k_kohya.safetensors")

    sample = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(1))
    args = (sample, torch.tensor([10, 700]), torch.randn(2, 77, 64, generator=torch.Generator().manual_seed(2)))
    cond = {"text_embeds": torch.randn(2, 32), "time_ids": torch.tensor([[64.0, 64, 0, 0, 64, 64]] * 2)}
    with torch.no_grad():
        expected = unet(*args, added_cond_kwargs=cond).sample
        base = kit.load_pipeline(tiny_model_path).unet(*args, added_cond_kwargs=cond).sample
        loaded = kit.load_pipeline(tiny_model_path, tmp_path / "lora").unet(*args, added_cond_kwargs=cond).sample
    assert (expected - base).abs().max() > 1e-3
    torch.testing.assert_close(loaded, expected, atol=1e-5, rtol=1e-5)
    if targets == ["to_q", "to_k", "to_v", "to_out.0"]:  # diffusers' kohya loader maps attention layers
        kohya_pipe = kit.load_pipeline(tiny_model_path, tmp_path / "lora", weight_name="k_kohya.safetensors")
        with torch.no_grad():
            from_kohya = kohya_pipe.unet(*args, added_cond_kwargs=cond).sample
        torch.testing.assert_close(from_kohya, expected, atol=1e-5, rtol=1e-5)


def test_text_encoder_lora_is_saved_in_both_formats_and_loads(tmp_path: Path, kit: Any,
                                                              tiny_model_path: Path) -> None:
    spec = kit.spec_with({"training": {"maxSteps": 4, "learningRate": 1e-2, "trainTextEncoder": True,
                                       "textEncoderLearningRate": 1e-2}})
    result = kit.run_train(tmp_path, spec)
    assert result.exit_code == 0, result.stdout_lines[-5:]
    with safe_open(str(result.output / "lora" / "pytorch_lora_weights.safetensors"), "pt") as handle:
        names = list(handle.keys())
        prefixes = {k.split(".", 1)[0] for k in names}
        te_b = [handle.get_tensor(k) for k in names if k.startswith("text_encoder") and "lora_B" in k]
    assert prefixes == {"unet", "text_encoder", "text_encoder_2"}
    assert max(float(t.abs().max()) for t in te_b) > 0  # B starts at zero: the encoders were trained
    with safe_open(str(result.output / "lora" / "run-out_kohya.safetensors"), "pt") as handle:
        kohya_names = list(handle.keys())
    kohya_prefixes = {k.split("_", 2)[1] for k in kohya_names}
    assert kohya_prefixes == {"unet", "te1", "te2"}

    pipe = kit.load_pipeline(tiny_model_path, result.output / "lora")
    te_lora = [n for n, _ in pipe.text_encoder.named_parameters() if "lora_" in n]
    te2_lora = [n for n, _ in pipe.text_encoder_2.named_parameters() if "lora_" in n]
    assert te_lora and te2_lora
