"""The queue and micro-batching logic on its own. The "model" here is a recording function on
the worker thread, so each test controls exactly when a batch finishes; the real pipeline runs
behind the same queue in test_serve_api.py and test_serve_overload.py."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import pytest

from sdxl_workloads.server.backends import GenerationCancelled, GenerationParams, ModelLimits
from sdxl_workloads.server.batcher import Batcher, Draining, GenerationFailed, QueueFull, RequestTimedOut
from sdxl_workloads.server.neuron_backend import CompiledShape, plan_calls

pytestmark = pytest.mark.compat


class RecordingModel:
    """Returns `item * 10` per item; blocks each batch until released when `gate` is used."""

    def __init__(self, gated: bool = False, fail: bool = False) -> None:
        self.batches: list[list[Any]] = []
        self.gate = threading.Event()
        if not gated:
            self.gate.set()
        self.fail = fail
        self.saw_stop = threading.Event()

    def __call__(self, items: Sequence[Any], should_stop: Callable[[], bool]) -> list[Any]:
        self.batches.append(list(items))
        while not self.gate.wait(0.01):
            if should_stop():
                self.saw_stop.set()
                raise GenerationCancelled("all gone")
        if self.fail:
            raise RuntimeError("device fell over")
        return [item * 10 for item in items]


def make(model: RecordingModel, queue_size: int = 8, max_batch: int = 4,
         changes: list[tuple[int, int]] | None = None) -> Batcher:
    return Batcher(model, queue_size=queue_size, max_batch_images=lambda: max_batch,
                   on_change=(lambda d, f: changes.append((d, f))) if changes is not None else None)


async def until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition never became true"
        await asyncio.sleep(0.005)


def test_compatible_requests_share_a_call_within_the_image_budget() -> None:
    model = RecordingModel(gated=True)

    async def scenario() -> list[Any]:
        batcher = make(model, max_batch=4)
        batcher.start()
        # The first request occupies the model; the rest queue up behind it.
        first = asyncio.ensure_future(batcher.submit(1, images=1, key="a", timeout=5))
        await until(lambda: len(model.batches) == 1)
        rest = [asyncio.ensure_future(batcher.submit(item, images=images, key=key, timeout=5))
                for item, images, key in [(2, 2, "a"), (3, 1, "b"), (4, 1, "a"), (5, 2, "a"), (6, 1, "b")]]
        await until(lambda: batcher.queue_depth == 5)
        model.gate.set()
        results = await asyncio.gather(first, *rest)
        await batcher.drain(5)
        return results

    results = asyncio.run(scenario())
    assert [outcome.value for outcome in results] == [10, 20, 30, 40, 50, 60]
    # Oldest first; same key only; at most 4 images per call (2 + 1, then 2 would make 5).
    assert model.batches == [[1], [2, 4], [3, 6], [5]]
    assert [outcome.batch_images for outcome in results] == [1, 3, 2, 3, 2, 2]


def test_a_full_queue_refuses_at_once_with_a_retry_estimate() -> None:
    model = RecordingModel(gated=True)
    changes: list[tuple[int, int]] = []

    async def scenario() -> None:
        batcher = make(model, queue_size=2, max_batch=1, changes=changes)
        batcher.start()
        running = asyncio.ensure_future(batcher.submit(1, images=1, key="a", timeout=5))
        await until(lambda: len(model.batches) == 1)
        waiting = [asyncio.ensure_future(batcher.submit(i, images=1, key="a", timeout=5)) for i in (2, 3)]
        await until(lambda: batcher.queue_depth == 2)
        with pytest.raises(QueueFull) as refused:
            await batcher.submit(4, images=1, key="a", timeout=5)
        assert refused.value.retry_after >= 1
        assert "queue is full" in str(refused.value)
        assert (batcher.queue_depth, batcher.in_flight) == (2, 3)
        model.gate.set()
        await asyncio.gather(running, *waiting)
        await batcher.drain(5)

    asyncio.run(scenario())
    assert changes[-1] == (0, 0)
    assert max(depth for depth, _ in changes) == 2


def test_a_request_that_times_out_in_the_queue_leaves_it() -> None:
    model = RecordingModel(gated=True)

    async def scenario() -> None:
        batcher = make(model, max_batch=1)
        batcher.start()
        running = asyncio.ensure_future(batcher.submit(1, images=1, key="a", timeout=5))
        await until(lambda: len(model.batches) == 1)
        with pytest.raises(RequestTimedOut, match="waiting in the queue"):
            await batcher.submit(2, images=1, key="a", timeout=0.05)
        assert batcher.queue_depth == 0
        model.gate.set()
        assert (await running).value == 10
        await batcher.drain(5)

    asyncio.run(scenario())
    assert model.batches == [[1]]  # the abandoned request never reached the model


def test_a_batch_whose_requests_all_timed_out_is_stopped_between_steps() -> None:
    model = RecordingModel(gated=True)

    async def scenario() -> None:
        batcher = make(model)
        batcher.start()
        with pytest.raises(RequestTimedOut, match="while generating"):
            await batcher.submit(1, images=1, key="a", timeout=0.1)
        await asyncio.to_thread(model.saw_stop.wait, 5)
        assert model.saw_stop.is_set()
        model.gate.set()
        assert (await batcher.submit(2, images=1, key="a", timeout=5)).value == 20
        await batcher.drain(5)

    asyncio.run(scenario())


def test_a_failing_pipeline_becomes_generation_failed_and_the_worker_lives_on() -> None:
    model = RecordingModel(fail=True)

    async def scenario() -> None:
        batcher = make(model)
        batcher.start()
        with pytest.raises(GenerationFailed, match="RuntimeError: device fell over"):
            await batcher.submit(1, images=1, key="a", timeout=5)
        model.fail = False
        assert (await batcher.submit(2, images=1, key="a", timeout=5)).value == 20
        await batcher.drain(5)

    asyncio.run(scenario())


def test_drain_finishes_accepted_work_and_refuses_new() -> None:
    model = RecordingModel(gated=True)

    async def scenario() -> None:
        batcher = make(model, max_batch=1)
        batcher.start()
        accepted = [asyncio.ensure_future(batcher.submit(i, images=1, key="a", timeout=5)) for i in (1, 2)]
        await until(lambda: len(model.batches) == 1)
        drained = asyncio.ensure_future(batcher.drain(5))
        await asyncio.sleep(0.02)
        with pytest.raises(Draining):
            await batcher.submit(3, images=1, key="a", timeout=5)
        assert not drained.done()
        model.gate.set()
        assert [o.value for o in await asyncio.gather(*accepted)] == [10, 20]
        await drained

    asyncio.run(scenario())


def test_batch_key_separates_what_cannot_share_a_call() -> None:
    base = GenerationParams(prompt="a", negative_prompt=None, num_inference_steps=2, guidance_scale=5.0,
                            width=64, height=64, seed=1)
    same = GenerationParams(prompt="b", negative_prompt=None, num_inference_steps=2, guidance_scale=5.0,
                            width=64, height=64, seed=9, num_images=3)
    assert base.batch_key() == same.batch_key()
    for field, value in [("num_inference_steps", 3), ("guidance_scale", 4.0), ("width", 72), ("height", 72),
                         ("negative_prompt", "")]:
        other = GenerationParams(**{**base.__dict__, field: value})
        assert other.batch_key() != base.batch_key(), field
    assert same.image_seeds() == [9, 10, 11]


def test_model_limits_name_the_field_and_the_allowed_size() -> None:
    free = ModelLimits(default_width=64, default_height=64, min_side=16, max_side=128)
    assert free.size_problem(64, 128) is None
    assert free.size_problem(136, 64)[0] == "width"
    assert "16..128" in free.size_problem(64, 8)[1]
    compiled = ModelLimits(default_width=1024, default_height=768, min_side=768, max_side=1024,
                           fixed_size=(1024, 768))
    assert compiled.size_problem(1024, 768) is None
    field, message = compiled.size_problem(1024, 1024)
    assert field == "height" and "compiled for 1024x768" in message


def test_neuron_calls_fill_the_compiled_batch_and_keep_per_image_seeds() -> None:
    def params(seed: int, n: int) -> GenerationParams:
        return GenerationParams(prompt=f"p{seed}", negative_prompt=None, num_inference_steps=2,
                                guidance_scale=5.0, width=1024, height=1024, seed=seed, num_images=n)

    # Compiled for 2 prompts x 2 images: a request of 3 images and one of 1 image.
    calls = plan_calls([params(10, 3), params(50, 1)], CompiledShape(batch_size=2, num_images_per_prompt=2,
                                                                     height=1024, width=1024))
    assert [[(s.request, s.seeds, s.keep) for s in call] for call in calls] == [
        [(0, (10, 11), 2), (0, (12, 13), 1)],
        [(1, (50, 51), 1), (1, (50, 51), 0)],  # padded with a repeat whose images are dropped
    ]
    single = plan_calls([params(7, 2)], CompiledShape(batch_size=1, num_images_per_prompt=1, height=8, width=8))
    assert [[s.seeds for s in call] for call in single] == [[(7,)], [(8,)]]
