"""The inference server's endpoints against the real tiny SDXL pipeline (builtin:tiny on CPU),
through httpx's ASGI transport with the app's lifespan running (so the batcher works)."""

from __future__ import annotations

import asyncio
import base64
import io
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from sdxl_workloads.server.app import create_app
from sdxl_workloads.server.backends import GenerationParams, ModelLimits, ShouldStop
from sdxl_workloads.server.diffusers_backend import DiffusersBackend
from sdxl_workloads.server.model import ServedModel
from sdxl_workloads.server.settings import ServerSettings

pytestmark = pytest.mark.compat

# Two denoising steps keep each request fast; the tiny model's default size is 64x64.
FAST = ServerSettings(default_steps=2, request_timeout=120)
PROMPT = "a photo of sks person"


def decode(b64: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(b64))).convert("RGB"), dtype=np.int16)


class GatedBackend:
    """The real backend, whose load() waits for a signal: lets a test look at the server while
    the weights are 'still loading' (a real SDXL load takes a minute; the tiny one 0.1 s)."""

    def __init__(self, inner: DiffusersBackend) -> None:
        self.inner = inner
        self.release = threading.Event()
        self.description = inner.description

    def load(self) -> ModelLimits:
        assert self.release.wait(60)
        return self.inner.load()

    def generate(self, batch: Sequence[GenerationParams], should_stop: ShouldStop) -> list[list[Any]]:
        return self.inner.generate(batch, should_stop)


def test_healthz_answers_while_loading_and_readyz_turns_ready_after_load(serving: Any, metric: Any,
                                                                         tiny_model_path: Path) -> None:
    backend = GatedBackend(DiffusersBackend(str(tiny_model_path)))
    model = ServedModel(backend)

    async def scenario() -> None:
        async with serving(create_app(model, FAST)) as client:
            assert (await client.get("/healthz")).status_code == 200
            not_ready = await client.get("/readyz")
            assert not_ready.status_code == 503
            assert "loading" in not_ready.json()["error"]["message"]
            early = await client.post("/v1/generate", json={"prompt": PROMPT})
            assert early.status_code == 503
            assert early.headers["retry-after"] == "5"
            metrics_text = (await client.get("/metrics")).text
            assert metric(metrics_text, "sdxl_model_ready") == 0
            assert metric(metrics_text, "sdxl_requests_rejected_total", reason="not_ready") == 1

            loader = threading.Thread(target=model.load)
            backend.release.set()
            loader.start()
            await asyncio.to_thread(loader.join, 60)
            ready = await client.get("/readyz")
            assert ready.status_code == 200, ready.text
            assert ready.json() == {"status": "ready"}, "ready or not, and nothing about the model"
            assert (await client.post("/v1/generate", json={"prompt": PROMPT})).status_code == 200
            assert metric((await client.get("/metrics")).text, "sdxl_model_ready") == 1

    asyncio.run(scenario())


def test_a_model_that_fails_to_load_says_so_on_readyz_and_why_on_generate(serving: Any,
                                                                          tmp_path: Path) -> None:
    """/readyz needs no key, so it says `failed` and never which model: the URI stays on the
    (key-protected) API and in the log."""
    model = ServedModel(DiffusersBackend(str(tmp_path / "missing-model")))
    with pytest.raises(Exception, match="missing-model"):
        model.load()

    async def scenario() -> None:
        async with serving(create_app(model, FAST)) as client:
            readyz = await client.get("/readyz")
            assert readyz.status_code == 503
            assert readyz.json()["detail"] == "failed"
            assert "failed to load" in readyz.json()["error"]["message"]
            assert "missing-model" not in readyz.text and str(tmp_path) not in readyz.text
            generate = await client.post("/v1/generate", json={"prompt": PROMPT})
            assert generate.status_code == 503
            assert "missing-model" in generate.json()["error"]["message"]

    asyncio.run(scenario())


def test_generate_returns_pngs_seeds_and_timings(serving: Any, loaded_model: ServedModel) -> None:
    async def scenario() -> None:
        async with serving(create_app(loaded_model, FAST)) as client:
            response = await client.post("/v1/generate", json={
                "prompt": PROMPT, "negative_prompt": "blurry", "seed": 7, "num_images": 2,
                "width": 48, "height": 32, "guidance_scale": 3.0})
            assert response.status_code == 200, response.text
            body = response.json()
            assert body["seed"] == 7 and body["seeds"] == [7, 8]
            assert (body["width"], body["height"], body["num_inference_steps"]) == (48, 32, 2)
            assert len(body["images"]) == 2
            for image in body["images"]:
                assert decode(image).shape == (32, 48, 3)
            assert not np.array_equal(decode(body["images"][0]), decode(body["images"][1]))
            timings = body["timings"]
            assert 0 <= timings["queue_seconds"] <= timings["total_seconds"]
            assert 0 < timings["inference_seconds"] <= timings["total_seconds"]
            assert "inference;dur=" in response.headers["server-timing"]

            default = (await client.post("/v1/generate", json={"prompt": PROMPT})).json()
            assert (default["width"], default["height"]) == (64, 64)  # the model config's size
            assert default["num_inference_steps"] == FAST.default_steps
            assert 0 <= default["seed"] < 2**32  # a random seed, reported so it can be replayed

    asyncio.run(scenario())


def test_same_seed_and_parameters_give_the_same_image_and_image_k_uses_seed_plus_k(serving: Any,
        loaded_model: ServedModel) -> None:
    request = {"prompt": PROMPT, "seed": 1234, "num_inference_steps": 3}

    async def scenario() -> None:
        async with serving(create_app(loaded_model, FAST)) as client:
            first = (await client.post("/v1/generate", json=request)).json()
            again = (await client.post("/v1/generate", json=request)).json()
            other_seed = (await client.post("/v1/generate", json={**request, "seed": 1235})).json()
            pair = (await client.post("/v1/generate", json={**request, "num_images": 2})).json()
            assert first["images"][0] == again["images"][0]  # byte-identical PNG
            assert not np.array_equal(decode(first["images"][0]), decode(other_seed["images"][0]))
            # Per-image seeding: the second image of seed 1234 is the first image of seed 1235.
            # (A 2-image call runs at another batch size, where float kernels may round the last
            # bit differently; a seed mix-up would differ everywhere, not by a level or two.)
            assert np.abs(decode(pair["images"][0]) - decode(first["images"][0])).max() <= 2
            assert np.abs(decode(pair["images"][1]) - decode(other_seed["images"][0])).max() <= 2
            assert np.abs(decode(pair["images"][1]) - decode(first["images"][0])).max() > 2

    asyncio.run(scenario())


def test_micro_batched_requests_get_the_images_they_would_get_alone(serving: Any,
                                                                    loaded_model: ServedModel) -> None:
    requests = [{"prompt": f"{PROMPT} {word}", "seed": seed, "num_inference_steps": 3}
                for word, seed in (("red", 1), ("blue", 2), ("green", 3), ("hat", 4))]

    async def scenario() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        async with serving(create_app(loaded_model, ServerSettings(max_batch=4, default_steps=2))) as client:
            batched = await asyncio.gather(*(client.post("/v1/generate", json=r) for r in requests))
        async with serving(create_app(loaded_model, FAST)) as client:
            alone = [await client.post("/v1/generate", json=r) for r in requests]
        return [r.json() for r in batched], [r.json() for r in alone]

    batched, alone = asyncio.run(scenario())
    assert max(r["batch_images"] for r in batched) > 1, "the concurrent requests were never batched"
    assert all(r["batch_images"] == 1 for r in alone)
    for together, single in zip(batched, alone, strict=True):
        # Float kernels may round the last bit differently at another batch size; the image
        # itself must be the same (a wrong seed or prompt pairing would differ everywhere).
        difference = np.abs(decode(together["images"][0]) - decode(single["images"][0]))
        assert difference.max() <= 2, difference.max()


def test_accept_image_png_returns_the_png_itself(serving: Any, loaded_model: ServedModel) -> None:
    request = {"prompt": PROMPT, "seed": 5, "num_inference_steps": 2}

    async def scenario() -> None:
        async with serving(create_app(loaded_model, FAST)) as client:
            png = await client.post("/v1/generate", json=request, headers={"Accept": "image/png"})
            assert png.status_code == 200
            assert png.headers["content-type"] == "image/png"
            assert png.headers["x-seed"] == "5"
            assert png.content.startswith(b"\x89PNG\r\n\x1a\n")
            as_json = (await client.post("/v1/generate", json=request)).json()
            assert png.content == base64.b64decode(as_json["images"][0])

            preferring_json = await client.post(
                "/v1/generate", json=request, headers={"Accept": "application/json, image/png;q=0.5"})
            assert preferring_json.headers["content-type"].startswith("application/json")

            several = await client.post("/v1/generate", json={**request, "num_images": 2},
                                        headers={"Accept": "image/png"})
            assert several.status_code == 406
            assert "num_images" in several.json()["error"]["message"]

    asyncio.run(scenario())


def test_openai_images_endpoint(serving: Any, loaded_model: ServedModel) -> None:
    async def scenario() -> None:
        async with serving(create_app(loaded_model, FAST)) as client:
            response = await client.post("/v1/images/generations", json={
                "prompt": PROMPT, "n": 2, "size": "32x48", "response_format": "b64_json",
                "model": "anything", "user": "ignored"})
            assert response.status_code == 200, response.text
            body = response.json()
            assert isinstance(body["created"], int)
            assert len(body["data"]) == 2
            assert decode(body["data"][0]["b64_json"]).shape == (48, 32, 3)

            url = await client.post("/v1/images/generations", json={"prompt": PROMPT, "response_format": "url"})
            assert url.status_code == 422
            assert "b64_json" in url.json()["error"]["message"]
            assert url.json()["detail"][0]["loc"] == ["body", "response_format"]

            too_big = await client.post("/v1/images/generations", json={"prompt": PROMPT, "size": "1024x1024"})
            assert too_big.status_code == 422
            assert too_big.json()["detail"][0]["loc"] == ["body", "size"]
            assert "16..128" in too_big.json()["error"]["message"]

    asyncio.run(scenario())


def test_metrics_move_with_traffic(serving: Any, metric: Any, loaded_model: ServedModel) -> None:
    async def scenario() -> None:
        async with serving(create_app(loaded_model, FAST)) as client:
            before = (await client.get("/metrics")).text
            assert metric(before, "sdxl_images_generated_total") == 0
            assert (await client.post("/v1/generate", json={"prompt": PROMPT, "num_images": 3})).status_code == 200
            assert (await client.post("/v1/images/generations", json={"prompt": PROMPT})).status_code == 200
            assert (await client.post("/v1/generate", json={"prompt": ""})).status_code == 422
            after_response = await client.get("/metrics")
            assert after_response.headers["content-type"].startswith("text/plain")
            after = after_response.text
            assert metric(after, "sdxl_images_generated_total") == 4
            assert metric(after, "sdxl_request_duration_seconds_count", endpoint="generate") == 1
            assert metric(after, "sdxl_request_duration_seconds_count", endpoint="openai") == 1
            assert metric(after, "sdxl_requests_rejected_total", reason="invalid") == 1
            assert metric(after, "sdxl_batch_images_count") == 2
            assert metric(after, "sdxl_queue_depth") == 0
            assert metric(after, "sdxl_requests_in_flight") == 0

    asyncio.run(scenario())


def test_openapi_document_and_docs_page(serving: Any, loaded_model: ServedModel) -> None:
    settings = ServerSettings(default_steps=2, max_steps=10, max_images=3)

    async def scenario() -> None:
        async with serving(create_app(loaded_model, settings)) as client:
            docs = await client.get("/docs")
            assert docs.status_code == 200 and "swagger" in docs.text.lower()
            schema = (await client.get("/openapi.json")).json()
            assert {"/v1/generate", "/v1/images/generations", "/healthz", "/readyz", "/metrics"} <= set(schema["paths"])
            generate = schema["components"]["schemas"]["GenerateRequest"]["properties"]
            # The server's own caps are what its schema says.
            assert generate["num_images"]["maximum"] == 3
            assert generate["num_inference_steps"]["anyOf"][0]["maximum"] == 10
            over = await client.post("/v1/generate", json={"prompt": PROMPT, "num_inference_steps": 11})
            assert over.status_code == 422

    asyncio.run(scenario())
