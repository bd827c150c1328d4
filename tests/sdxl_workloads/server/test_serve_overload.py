"""Under load and failure the server answers with 200, 429, 503 or 504, never a 500, keeps its
event loop free while the model computes, and stays healthy afterwards (real tiny model)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from sdxl_workloads.server.app import create_app
from sdxl_workloads.server.backends import GenerationParams, ModelLimits, ShouldStop
from sdxl_workloads.server.diffusers_backend import DiffusersBackend
from sdxl_workloads.server.model import ServedModel
from sdxl_workloads.server.settings import ServerSettings

pytestmark = pytest.mark.compat

PROMPT = "a photo of sks person"


@pytest.mark.slow
def test_32_concurrent_requests_with_a_queue_of_8_get_only_200_or_429(serving: Any, metric: Any,
                                                                      loaded_model: ServedModel) -> None:
    settings = ServerSettings(queue_size=8, max_batch=1, default_steps=2, request_timeout=120)

    async def scenario() -> None:
        async with serving(create_app(loaded_model, settings)) as client:
            responses = await asyncio.gather(*(
                client.post("/v1/generate", json={"prompt": PROMPT, "seed": i}) for i in range(32)))
            statuses = [r.status_code for r in responses]
            assert set(statuses) <= {200, 429}, statuses
            # The one in the model plus a full queue get through; the rest are refused.
            assert statuses.count(200) >= settings.queue_size
            assert statuses.count(429) >= 32 - settings.queue_size - 2
            for refused in (r for r in responses if r.status_code == 429):
                assert int(refused.headers["retry-after"]) >= 1
                assert "queue is full" in refused.json()["error"]["message"]
            # Healthy afterwards: probes answer and new work is served.
            assert (await client.get("/healthz")).status_code == 200
            assert (await client.get("/readyz")).status_code == 200
            assert (await client.post("/v1/generate", json={"prompt": PROMPT})).status_code == 200
            text = (await client.get("/metrics")).text
            assert metric(text, "sdxl_requests_rejected_total", reason="queue_full") == statuses.count(429)
            assert metric(text, "sdxl_queue_depth") == 0
            assert metric(text, "sdxl_requests_in_flight") == 0
            assert metric(text, "sdxl_images_generated_total") == statuses.count(200) + 1

    asyncio.run(scenario())


def test_the_event_loop_answers_while_the_model_computes(serving: Any, metric: Any,
                                                         loaded_model: ServedModel) -> None:
    async def scenario() -> None:
        async with serving(create_app(loaded_model, ServerSettings(default_steps=2))) as client:
            slow = asyncio.ensure_future(client.post(
                "/v1/generate", json={"prompt": PROMPT, "num_inference_steps": 30, "width": 96, "height": 96}))
            while metric((await client.get("/metrics")).text, "sdxl_requests_in_flight") < 1:
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.05)  # the pipeline call is under way on the worker thread
            began = time.perf_counter()
            health = await client.get("/healthz")
            answered_in = time.perf_counter() - began
            assert health.status_code == 200
            assert not slow.done(), "the slow request finished before the probe; make it slower"
            assert answered_in < 0.5, f"/healthz took {answered_in:.2f} s while the model was busy"
            assert (await slow).status_code == 200

    asyncio.run(scenario())


def test_a_request_over_the_timeout_gets_504_and_the_server_moves_on(serving: Any, metric: Any,
                                                                     loaded_model: ServedModel) -> None:
    settings = ServerSettings(default_steps=2, request_timeout=0.3)

    async def scenario() -> None:
        async with serving(create_app(loaded_model, settings)) as client:
            slow = await client.post("/v1/generate", json={
                "prompt": PROMPT, "num_inference_steps": 150, "width": 128, "height": 128})
            assert slow.status_code == 504
            assert "request timeout of 0.3 s" in slow.json()["error"]["message"]
            # The abandoned batch stops between steps, so the next request is not stuck behind
            # 150 steps of work nobody waits for.
            began = time.perf_counter()
            deadline = began + 30
            while True:
                quick = await client.post("/v1/generate", json={"prompt": PROMPT, "num_inference_steps": 1})
                if quick.status_code == 200 or time.perf_counter() > deadline:
                    break
            assert quick.status_code == 200, quick.text
            assert metric((await client.get("/metrics")).text, "sdxl_requests_rejected_total", reason="timeout") >= 1

    asyncio.run(scenario())


class BrokenDevice:
    """The real backend until told to fail like a device does (e.g. CUDA out of memory, which
    cannot be provoked on this CPU-only machine)."""

    def __init__(self, inner: DiffusersBackend) -> None:
        self.inner = inner
        self.description = inner.description
        self.broken = False  # healthy through load and its warm-up; the test breaks it afterwards

    def load(self) -> ModelLimits:
        return self.inner.load()

    def generate(self, batch: Sequence[GenerationParams], should_stop: ShouldStop) -> list[list[Any]]:
        if self.broken:
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return self.inner.generate(batch, should_stop)


def test_a_pipeline_error_is_503_with_the_reason_and_the_server_recovers(serving: Any, metric: Any,
                                                                         tiny_model_path: Path) -> None:
    backend = BrokenDevice(DiffusersBackend(str(tiny_model_path)))
    model = ServedModel(backend)
    model.load()
    backend.broken = True

    async def scenario() -> None:
        async with serving(create_app(model, ServerSettings(default_steps=1))) as client:
            failed = await client.post("/v1/generate", json={"prompt": PROMPT})
            assert failed.status_code == 503
            assert "CUDA out of memory" in failed.json()["error"]["message"]
            backend.broken = False
            assert (await client.post("/v1/generate", json={"prompt": PROMPT})).status_code == 200
            text = (await client.get("/metrics")).text
            assert metric(text, "sdxl_requests_rejected_total", reason="generation_failed") == 1

    asyncio.run(scenario())
