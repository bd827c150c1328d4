"""A LoRA crosses the image boundary: trained with the training image's libraries, it is loaded,
fused, prepared and served with whichever library set runs this test.

Under `make test` this module runs twice: in .venv (the training and GPU images' libraries:
diffusers 0.42, peft 0.21, transformers 5) and in .venv-compat (the Neuron image's: diffusers
0.35.2, peft 0.17, transformers 4.57). The LoRA is always written by `sdxl-workload train` with
.venv's Python, in a subprocess, so the compat run loads exactly what the trainer image writes.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml
from safetensors import safe_open

pytestmark = pytest.mark.compat

REPO = Path(__file__).resolve().parents[2]
PROMPT = "a photo of sks person"
KOHYA_NAME = "alice-v1_kohya.safetensors"  # the example's metadata.name


def trainer_python() -> Path:
    """The training image's interpreter: .venv's (SDXL_TRAINER_PYTHON overrides, e.g. in CI)."""
    return Path(os.environ.get("SDXL_TRAINER_PYTHON", REPO / ".venv" / "bin" / "python"))


EXAMPLE = REPO / "crds" / "examples" / "finetune.yaml"


@pytest.fixture(scope="module")
def trained_lora(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The LoRA folder of the flagship example's run (crds/examples/finetune.yaml: bf16, gradient
    checkpointing, prior preservation with generated class images, accumulation 4, rank 8, face
    crop) plus text-encoder LoRA, made by the training image's libraries. Changed for a CPU: the
    embedded model and photos, 64 px, 3 steps, 2 class images, and learning rates high enough
    for 3 steps to change the images."""
    python = trainer_python()
    if not python.exists():
        pytest.fail(f"{python} is missing: run `make setup` (the trainer's libraries write the LoRA this test loads)")
    work = tmp_path_factory.mktemp("trainer")
    manifest = yaml.safe_load(EXAMPLE.read_text())
    spec = manifest["spec"]
    spec.update(baseModel="builtin:tiny", instanceImages="builtin:sample-subject", resources={"gpus": 0, "cpu": "1"})
    for key in ("vae", "output"):  # the hub's fp16-fix VAE; S3
        spec.pop(key)
    spec["priorPreservation"]["numClassImages"] = 2
    spec["training"].update(maxSteps=3, resolution=64, learningRate=2e-2, textEncoderLearningRate=1e-2,
                            trainTextEncoder=True, checkpointEvery=0)
    spec["validation"].update(every=0, numInferenceSteps=1)
    assert (spec["training"]["mixedPrecision"], spec["training"]["gradientCheckpointing"],
            spec["priorPreservation"]["enabled"]) == ("bf16", True, True)
    (work / "spec.yaml").write_text(yaml.safe_dump(manifest))
    # The trainer's own model cache: the compat run's SDXL_CACHE_DIR holds the compat-built copy.
    env = {k: v for k, v in os.environ.items() if k != "SDXL_CACHE_DIR"}
    env.update(OMP_NUM_THREADS="1", PYTHONPATH=str(REPO / "workloads"))
    done = subprocess.run([str(python), "-m", "sdxl_workloads", "train", "--spec", str(work / "spec.yaml"),
                           "--output", str(work / "out"), "--termination-log", str(work / "log")],
                          env=env, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert json.loads((work / "log").read_text())["status"] == "Succeeded"
    return work / "out" / "lora"


def _pipe(model: Path) -> Any:
    from diffusers import StableDiffusionXLPipeline

    pipe = StableDiffusionXLPipeline.from_pretrained(str(model))
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _render(pipe: Any) -> np.ndarray:
    torch.set_num_threads(1)
    images = pipe(PROMPT, height=64, width=64, num_inference_steps=2, guidance_scale=5.0,
                  generator=torch.Generator().manual_seed(3), output_type="np").images
    return np.asarray(images[0])


def test_the_metadata_names_only_keys_every_peft_release_knows(trained_lora: Path) -> None:
    with safe_open(str(trained_lora / "pytorch_lora_weights.safetensors"), "pt") as handle:
        metadata = handle.metadata()
    # diffusers keeps one JSON map, "<component>.<key>": value, for all components.
    flat = json.loads(metadata["lora_adapter_metadata"])
    configs: dict[str, dict[str, Any]] = {}
    for key, value in flat.items():
        component, _, name = key.partition(".")
        configs.setdefault(component, {})[name] = value
    assert set(configs) == {"unet", "text_encoder", "text_encoder_2"}
    for config in configs.values():
        assert set(config) == {"r", "lora_alpha", "target_modules", "rank_pattern", "alpha_pattern"}
        # the example's rank 8; alpha / rank is folded into the weights, so alpha = rank
        assert config["lora_alpha"] == config["r"] == 8


def test_the_trainers_lora_loads_and_fuses_here(trained_lora: Path, tiny_model_path: Path) -> None:
    base = _render(_pipe(tiny_model_path))
    pipe = _pipe(tiny_model_path)
    pipe.load_lora_weights(str(trained_lora))  # peft 0.17 refused peft 0.21's whole LoraConfig here
    loaded = {name for name, _ in pipe.text_encoder.named_parameters() if "lora_A" in name}
    assert loaded, "the text encoder's LoRA was not loaded"
    unfused = _render(pipe)
    assert np.abs(unfused - base).mean() > 1e-3, "the LoRA changed nothing"
    pipe.fuse_lora()
    pipe.unload_lora_weights()
    np.testing.assert_allclose(_render(pipe), unfused, atol=2e-3)


def test_the_kohya_copy_loads_through_the_kohya_converter_here(trained_lora: Path, tiny_model_path: Path) -> None:
    with safe_open(str(trained_lora / KOHYA_NAME), "pt") as handle:
        keys = list(handle.keys())
    assert any(k.startswith("lora_te1_") for k in keys) and any(k.startswith("lora_unet_") for k in keys)
    diffusers_format = _pipe(tiny_model_path)
    diffusers_format.load_lora_weights(str(trained_lora))
    kohya = _pipe(tiny_model_path)
    kohya.load_lora_weights(str(trained_lora), weight_name=KOHYA_NAME)
    np.testing.assert_allclose(_render(kohya), _render(diffusers_format), atol=2e-3)


def test_the_gpu_and_cpu_servers_backend_serves_it_here(trained_lora: Path, tiny_model_path: Path) -> None:
    from sdxl_workloads.server.backends import GenerationParams
    from sdxl_workloads.server.diffusers_backend import DiffusersBackend

    params = GenerationParams(prompt=PROMPT, negative_prompt=None, num_inference_steps=2, guidance_scale=5.0,
                              width=64, height=64, seed=11)
    images = {}
    for name, lora in (("base", None), ("lora", str(trained_lora))):
        backend = DiffusersBackend(str(tiny_model_path), lora=lora)
        backend.load()
        (batch,) = backend.generate([params], lambda: False)
        images[name] = np.asarray(batch[0], dtype=np.int16)
    assert np.abs(images["lora"] - images["base"]).max() > 4


@pytest.mark.slow
def test_compile_prepares_the_trainers_lora_here(trained_lora: Path, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """The compile step's CPU path (load base, fuse the LoRA, save) on what the trainer wrote; under
    .venv-compat these are the Neuron image's libraries, which optimum-neuron calls the same way."""
    from sdxl_workloads import cli

    torch.set_num_threads(1)
    spec = tmp_path / "deployment.yaml"
    spec.write_text(yaml.safe_dump({
        "apiVersion": "sdxl.io/v1alpha1", "kind": "SDXLDeployment", "metadata": {"name": "alice"},
        "spec": {"baseModel": "builtin:tiny", "accelerator": "cpu",
                 "lora": str(trained_lora / "pytorch_lora_weights.safetensors")}}))
    log = tmp_path / "log"
    capsys.readouterr()
    rc = cli.main(["compile", "--spec", str(spec), "--store", str(tmp_path / "store"), "--termination-log", str(log)])
    result = json.loads(log.read_text())
    assert rc == 0, result
    prepared = Path(result["artifacts"]["compiled"])
    assert (prepared / "COMPLETE").is_file()
    pipe = _pipe(prepared)
    assert not any("lora" in name for name, _ in pipe.unet.named_parameters())  # fused, adapters gone
    assert _render(pipe).shape == (64, 64, 3)


def test_text_encoder_lora_gets_gradients_with_checkpointing_here(tiny_model_path: Path) -> None:
    """transformers 4.x checkpoints reentrantly by default, which starves the LoRA of gradients;
    the trainer's checkpointing must give every used LoRA layer one under both library sets."""
    from sdxl_workloads.train import lora_setup, model_loading
    from sdxl_workloads.train.embedding_cache import encode_prompts

    torch.set_num_threads(1)
    model = model_loading.load_base_model(str(tiny_model_path))
    encoders = [model.text_encoder_one, model.text_encoder_two]
    for encoder in encoders:
        lora_setup.add_text_encoder_lora(encoder, rank=4, alpha=4)
        lora_setup.enable_text_encoder_checkpointing(encoder)
        encoder.train()
        assert encoder.is_gradient_checkpointing
        with torch.no_grad():  # non-zero B, so A's gradient is non-zero too
            for name, param in encoder.named_parameters():
                if "lora_B" in name:
                    param.normal_(0, 0.1)
    embeds, pooled = encode_prompts(encoders, [model.tokenizer_one, model.tokenizer_two], [PROMPT])
    (embeds.square().mean() + pooled.square().mean()).backward()
    last_layer = f"layers.{model.text_encoder_one.config.num_hidden_layers - 1}."
    checked = 0
    for index, encoder in enumerate(encoders):
        for name, param in encoder.named_parameters():
            if not param.requires_grad:
                continue
            if index == 0 and last_layer in name:
                continue  # SDXL reads the first encoder's penultimate layer: its last one is unused
            checked += 1
            assert param.grad is not None and param.grad.abs().sum() > 0, f"no gradient for {name}"
    assert checked > 0
