"""The diffusers backend with a LoRA (`spec.lora`): base + LoRA fused at load time at `spec.loraScale`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sdxl_workloads.protocol import WorkloadError
from sdxl_workloads.server.backends import GenerationParams
from sdxl_workloads.server.diffusers_backend import DiffusersBackend, lora_location

pytestmark = pytest.mark.compat

PARAMS = GenerationParams(prompt="a photo of sks person", negative_prompt=None, num_inference_steps=2,
                          guidance_scale=5.0, width=64, height=64, seed=11)


@pytest.fixture(scope="module")
def lora_dir(tiny_model_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A LoRA on the tiny UNet's attention projections with random (non-zero) weights, saved the
    way the trainer saves one (diffusers format)."""
    import torch
    from diffusers import StableDiffusionXLPipeline
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    pipe = StableDiffusionXLPipeline.from_pretrained(str(tiny_model_path))
    torch.manual_seed(0)
    # init_lora_weights=False: random B as well as A, so the LoRA changes the output from step 0.
    pipe.unet.add_adapter(LoraConfig(r=4, lora_alpha=4, init_lora_weights=False,
                                     target_modules=["to_q", "to_k", "to_v", "to_out.0"]))
    out = tmp_path_factory.mktemp("lora")
    StableDiffusionXLPipeline.save_lora_weights(out, unet_lora_layers=get_peft_model_state_dict(pipe.unet))
    return out


def image(backend: DiffusersBackend) -> np.ndarray:
    backend.load()
    (images,) = backend.generate([PARAMS], lambda: False)
    return np.asarray(images[0], dtype=np.int16)


def test_lora_is_fused_at_the_given_scale(tiny_model_path: Path, lora_dir: Path) -> None:
    base = image(DiffusersBackend(str(tiny_model_path)))
    full = image(DiffusersBackend(str(tiny_model_path), lora=str(lora_dir), lora_scale=1.0))
    half = image(DiffusersBackend(str(tiny_model_path), lora=str(lora_dir / "pytorch_lora_weights.safetensors"),
                                  lora_scale=0.5))
    off = image(DiffusersBackend(str(tiny_model_path), lora=str(lora_dir), lora_scale=0.0))
    assert np.abs(full - base).max() > 8, "the LoRA changed nothing"
    assert np.abs(off - base).max() <= 2, "scale 0 must give the base model's image"
    # Half strength lies between: closer to the base than the full LoRA is.
    assert np.abs(half - base).mean() < np.abs(full - base).mean()


def test_lora_location_and_errors(tmp_path: Path, lora_dir: Path, tiny_model_path: Path) -> None:
    weights = lora_dir / "pytorch_lora_weights.safetensors"
    assert lora_location(str(lora_dir)) == (str(lora_dir), weights.name)
    assert lora_location(str(weights)) == (str(lora_dir), weights.name)
    (tmp_path / "run" / "lora").mkdir(parents=True)
    (tmp_path / "run" / "lora" / weights.name).write_bytes(weights.read_bytes())
    # A training run's output folder works too: the LoRA is in its lora/ subfolder.
    assert lora_location(str(tmp_path / "run")) == (str(tmp_path / "run" / "lora"), weights.name)
    (tmp_path / "empty").mkdir()
    with pytest.raises(WorkloadError, match="no LoRA weights"):
        lora_location(str(tmp_path / "empty"))
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"not a safetensors file")
    with pytest.raises(WorkloadError, match="cannot be applied"):
        DiffusersBackend(str(tiny_model_path), lora=str(garbage)).load()
