"""The GPU serving path (accelerator nvidia), run on the CPU up to the one call that needs a GPU.

Everything `DiffusersBackend(device="cuda")` does before `.to("cuda")` runs here on the real tiny
pipeline: the weights in fp16, the VAE decoding one image at a time (slicing) with tiling on, and
SDXL's VAE upcast to fp32 for decoding because its config says fp16 overflows (`force_upcast`).
Only `.to("cuda")` is replaced (there is no GPU here), by a recorder that leaves the pipeline on the
CPU; the warm-up generation then runs the fp16 pipeline on the CPU, which torch supports.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from sdxl_workloads.server.diffusers_backend import DiffusersBackend, load_pipeline
from sdxl_workloads.server.model import ServedModel

pytestmark = pytest.mark.compat


def record_vae_decodes(pipe: Any) -> list[tuple[torch.dtype, torch.dtype, int]]:
    """(dtype of the decoder's upsampling blocks, dtype of the decoded images, images) of every VAE
    decode call. The upsampling blocks are where SDXL's VAE overflows in fp16; diffusers may keep the
    layers before them in fp16 (0.35 does, with SDPA), so those are not what is checked."""
    calls: list[tuple[torch.dtype, torch.dtype, int]] = []
    real = pipe.vae._decode

    def spy(z: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        out = real(z, *args, **kwargs)
        sample = out.sample if hasattr(out, "sample") else out[0]
        calls.append((next(pipe.vae.decoder.up_blocks.parameters()).dtype, sample.dtype, int(z.shape[0])))
        return out

    pipe.vae._decode = spy
    return calls


def test_the_gpu_pipeline_is_fp16_and_decodes_sliced_tiled_and_upcast(tiny_model_path: Path) -> None:
    pipe = load_pipeline(str(tiny_model_path), None, 1.0, "cuda")
    assert pipe.unet.dtype == torch.float16 and pipe.text_encoder_2.dtype == torch.float16
    assert pipe.vae.use_slicing, "8 images at 1024 px decoded at once risk running out of GPU memory"
    assert pipe.vae.use_tiling, "2048 px (the largest size served) decodes in tiles"
    assert pipe.vae.config.force_upcast, "an SDXL VAE in fp16 overflows: the pipeline must upcast it to decode"

    decodes = record_vae_decodes(pipe)
    out = pipe(["a photo"] * 3, num_inference_steps=1, height=64, width=64, output_type="np",
               generator=[torch.Generator().manual_seed(i) for i in range(3)])
    assert decodes == [(torch.float32, torch.float32, 1)] * 3, "one image per decode, in fp32"
    assert np.isfinite(out.images).all()
    assert pipe.vae.dtype == torch.float16, "the VAE goes back to fp16 between requests"


def test_the_cpu_pipeline_keeps_fp32_and_plain_decoding(tiny_model_path: Path) -> None:
    pipe = load_pipeline(str(tiny_model_path), None, 1.0, "cpu")
    assert pipe.unet.dtype == torch.float32 and pipe.vae.dtype == torch.float32
    assert not pipe.vae.use_slicing and not pipe.vae.use_tiling


def test_the_gpu_backend_configures_moves_and_warms_up_before_ready(tiny_model_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from diffusers import StableDiffusionXLPipeline

    moved: list[str] = []

    def to_without_a_gpu(self: Any, *args: Any, **kwargs: Any) -> Any:  # the only call that needs a GPU
        moved.append(str(args[0]) if args else str(kwargs.get("device")))
        return self

    monkeypatch.setattr(StableDiffusionXLPipeline, "to", to_without_a_gpu)
    backend = DiffusersBackend(str(tiny_model_path), device="cuda")
    model = ServedModel(backend)
    warm_ups: list[tuple[bool, int, int]] = []
    real_generate = backend.generate

    def recording_generate(batch: Any, should_stop: Any) -> Any:
        warm_ups.append((model.ready, batch[0].width, batch[0].height))
        return real_generate(batch, should_stop)

    monkeypatch.setattr(backend, "generate", recording_generate)
    model.load()
    assert moved == ["cuda"]
    # One generation at the model's default size inside load(), before it counts as ready: the
    # first client does not pay CUDA's first-call costs.
    default = model.limits.default_width
    assert warm_ups == [(False, default, model.limits.default_height)]
    assert backend.pipeline.vae.use_slicing and backend.pipeline.vae.use_tiling
    assert backend.pipeline.unet.dtype == torch.float16
    assert model.ready


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs an NVIDIA GPU (the tests above cover the rest)")
def test_the_gpu_backend_serves_eight_images_on_a_real_gpu(tiny_model_path: Path) -> None:
    """On a GPU: load (fp16, sliced and tiled VAE), warm up, and serve a full request of 8 images."""
    from sdxl_workloads.server.backends import GenerationParams

    backend = DiffusersBackend(str(tiny_model_path), device="cuda")
    model = ServedModel(backend)
    model.load()
    params = GenerationParams(prompt="a photo", negative_prompt=None, num_inference_steps=4, guidance_scale=5.0,
                              width=128, height=128, seed=3, num_images=8)
    [images] = model.generate([params], lambda: False)
    assert len(images) == 8 and {image.size for image in images} == {(128, 128)}
    pixels = np.stack([np.asarray(image) for image in images])
    assert pixels.std() > 0, "all images blank: the fp16 decode overflowed"
    assert backend.pipeline.device.type == "cuda" and backend.pipeline.vae.dtype == torch.float16
