"""The Neuron backend: static shapes read from an optimum-neuron export's configs, requests held
to the compiled size (422 naming it), and images served in calls of exactly the compiled batch.

The Neuron runtime (torch-neuronx) cannot run here, so `load_neuron_pipeline` is replaced by the
tiny diffusers pipeline behind a wrapper that behaves like the compiled one: it overrides
height/width with the static size (as `NeuronDiffusionPipelineBase.__call__` does) and refuses
any other batch than the compiled one (as a traced graph would).
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from sdxl_workloads.protocol import WorkloadError
from sdxl_workloads.server.app import create_app
from sdxl_workloads.server.model import ServedModel
from sdxl_workloads.server.neuron_backend import CompiledShape, NeuronBackend, read_compiled_shape
from sdxl_workloads.server.settings import ServerSettings

pytestmark = pytest.mark.compat


def write_compiled_configs(folder: Path, *, batch: int, images_per_prompt: int, latent_h: int,
                           latent_w: int) -> Path:
    """The parts of an optimum-neuron SDXL export the server reads (each component's config.json)."""
    for component, config in {
        "unet": {"neuron": {"static_batch_size": batch * images_per_prompt, "static_height": latent_h,
                            "static_width": latent_w, "static_sequence_length": 77}},
        "text_encoder": {"neuron": {"static_batch_size": batch, "static_sequence_length": 77}},
        "vae_decoder": {"block_out_channels": [8, 16, 16, 16],
                        "neuron": {"static_batch_size": batch * images_per_prompt}},
    }.items():
        (folder / component).mkdir(parents=True)
        (folder / component / "config.json").write_text(json.dumps(config))
    (folder / "model_index.json").write_text("{}")
    return folder


class CompiledStandIn:
    def __init__(self, pipe: Any, shape: CompiledShape) -> None:
        self.pipe = pipe
        self.shape = shape
        self.calls: list[int] = []
        self.on_call: Any = None

    def __call__(self, **kwargs: Any) -> Any:
        if self.on_call is not None:
            self.on_call()
        assert len(kwargs["prompt"]) == self.shape.batch_size, "a compiled graph takes only its batch"
        assert kwargs["num_images_per_prompt"] == self.shape.num_images_per_prompt
        assert len(kwargs["generator"]) == self.shape.images_per_call
        kwargs.pop("height", None)
        kwargs.pop("width", None)
        self.calls.append(len(kwargs["prompt"]))
        return self.pipe(height=self.shape.height, width=self.shape.width, **kwargs)


def test_read_compiled_shape(tmp_path: Path) -> None:
    folder = write_compiled_configs(tmp_path / "c", batch=2, images_per_prompt=3, latent_h=128, latent_w=96)
    assert read_compiled_shape(folder) == CompiledShape(batch_size=2, num_images_per_prompt=3, height=1024, width=768)
    (tmp_path / "plain" / "unet").mkdir(parents=True)
    (tmp_path / "plain" / "unet" / "config.json").write_text('{"sample_size": 128}')
    with pytest.raises(WorkloadError, match="no 'neuron' section"):
        read_compiled_shape(tmp_path / "plain")
    with pytest.raises(WorkloadError, match="cannot read"):
        read_compiled_shape(tmp_path / "absent")


def test_neuron_server_holds_requests_to_the_compiled_size(tmp_path: Path, tiny_model_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    from diffusers import StableDiffusionXLPipeline

    import sdxl_workloads.models.neuron_export as neuron_export

    folder = write_compiled_configs(tmp_path / "compiled", batch=2, images_per_prompt=1, latent_h=6, latent_w=8)
    shape = read_compiled_shape(folder)
    assert (shape.width, shape.height) == (64, 48)
    pipe = StableDiffusionXLPipeline.from_pretrained(str(tiny_model_path))
    pipe.set_progress_bar_config(disable=True)
    stand_in = CompiledStandIn(pipe, shape)
    monkeypatch.setattr(neuron_export, "load_neuron_pipeline", lambda path: stand_in)

    model = ServedModel(NeuronBackend(str(folder)))
    ready_during_warm_up: list[bool] = []
    stand_in.on_call = lambda: ready_during_warm_up.append(model.ready)
    model.load()
    assert model.limits.fixed_size == (64, 48)
    # The warm-up: one call of the compiled batch inside load(), before the model counts as ready
    # (optimum-neuron loads the compiled UNet onto the device lazily, at the first call).
    assert stand_in.calls == [2] and ready_during_warm_up == [False]
    stand_in.calls.clear()

    async def scenario() -> None:
        app = create_app(model, ServerSettings(default_steps=2, max_batch=8))
        async with app.router.lifespan_context(app), httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://server", timeout=120) as client:
            default = await client.post("/v1/generate", json={"prompt": "a photo", "num_images": 3, "seed": 4})
            assert default.status_code == 200, default.text
            body = default.json()
            assert (body["width"], body["height"]) == (64, 48)
            sizes = {Image.open(io.BytesIO(base64.b64decode(i))).size for i in body["images"]}
            assert sizes == {(64, 48)} and len(body["images"]) == 3
            # Per-image seeds hold on Neuron too: image 2 of seed 4 is image 1 of seed 5.
            single = (await client.post("/v1/generate", json={"prompt": "a photo", "seed": 5})).json()
            assert single["images"][0] == body["images"][1]

            wrong = await client.post("/v1/generate", json={"prompt": "a photo", "width": 64, "height": 64})
            assert wrong.status_code == 422
            assert wrong.json()["detail"][0]["loc"] == ["body", "height"]
            assert "compiled for 64x48" in wrong.json()["error"]["message"]
            # The compiled height with another width: each side is held to its own compiled value
            # (the stand-in, like optimum-neuron, would silently render 64x48 instead).
            for width in (56, 48, 128):
                other = await client.post("/v1/generate", json={"prompt": "a photo", "width": width, "height": 48})
                assert other.status_code == 422, (width, other.text)
                assert other.json()["detail"][0]["loc"] == ["body", "width"]
                assert f"width must be 64, got {width}" in other.json()["error"]["message"]
            only_width = await client.post("/v1/generate", json={"prompt": "a photo", "width": 56})
            assert only_width.status_code == 422 and only_width.json()["detail"][0]["loc"] == ["body", "width"]
            openai_width = await client.post("/v1/images/generations", json={"prompt": "a photo", "size": "56x48"})
            assert openai_width.status_code == 422 and "compiled for 64x48" in openai_width.text
            openai = await client.post("/v1/images/generations", json={"prompt": "a photo", "size": "128x128"})
            assert openai.status_code == 422 and "compiled for 64x48" in openai.json()["error"]["message"]

    asyncio.run(scenario())
    # 3 images -> two calls of the compiled batch of 2 (the last padded), then one more call.
    assert stand_in.calls == [2, 2, 2]


def test_a_neuron_batch_whose_clients_left_stops_within_a_step(tmp_path: Path, tiny_model_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """One compiled call is a whole SDXL generation (seconds on inf2): the stop must come between its
    denoising steps, through diffusers' step callback that optimum-neuron's pipeline runs."""
    from diffusers import StableDiffusionXLPipeline

    import sdxl_workloads.models.neuron_export as neuron_export
    from sdxl_workloads.server.backends import GenerationCancelled, GenerationParams

    folder = write_compiled_configs(tmp_path / "compiled", batch=1, images_per_prompt=1, latent_h=8, latent_w=8)
    pipe = StableDiffusionXLPipeline.from_pretrained(str(tiny_model_path))
    pipe.set_progress_bar_config(disable=True)
    stand_in = CompiledStandIn(pipe, read_compiled_shape(folder))
    monkeypatch.setattr(neuron_export, "load_neuron_pipeline", lambda path: stand_in)
    backend = NeuronBackend(str(folder))
    backend.load()
    steps_seen: list[int] = []
    real_step = pipe.scheduler.step

    def counting_step(*args: Any, **kwargs: Any) -> Any:
        steps_seen.append(1)
        return real_step(*args, **kwargs)

    monkeypatch.setattr(pipe.scheduler, "step", counting_step)
    asked: list[int] = []

    def gone_after_the_call_started() -> bool:
        asked.append(1)
        return len(asked) > 1  # present at the check before the call, gone from the first step on

    params = GenerationParams(prompt="a photo", negative_prompt=None, num_inference_steps=50, guidance_scale=5.0,
                              width=64, height=64, seed=1)
    with pytest.raises(GenerationCancelled):
        backend.generate([params], gone_after_the_call_started)
    assert len(steps_seen) == 1, "the compiled call ran on after its clients had gone"
