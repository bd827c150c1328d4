"""A bounded queue in front of the single model, with micro-batching of compatible requests.

Requests wait in FIFO order; when the model is free the worker takes the oldest one plus any
later requests with the same batch key, up to a budget of images, and runs them in ONE pipeline
call on a dedicated thread, so the event loop keeps answering (/healthz, /metrics, 429s) while
the model computes. The queue is bounded: when it is full a request is refused at once (429 with
an estimate of when to retry) instead of waiting without limit.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import math
import time
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from sdxl_workloads.server.backends import GenerationCancelled

log = logging.getLogger(__name__)

P = TypeVar("P")
R = TypeVar("R")

# run_batch(items, should_stop) -> one result per item, in order. Runs on the worker thread.
RunBatch = Callable[[Sequence[Any], Callable[[], bool]], Sequence[Any]]


class QueueFull(Exception):
    def __init__(self, retry_after: int, queue_size: int) -> None:
        super().__init__(f"the queue is full ({queue_size} requests waiting); retry in about {retry_after} s")
        self.retry_after = retry_after


class RequestTimedOut(Exception):
    def __init__(self, timeout: float, started: bool) -> None:
        where = "while generating" if started else "while waiting in the queue"
        super().__init__(f"no result within the server's request timeout of {timeout:g} s ({where})")
        self.started = started


class Draining(Exception):
    def __init__(self) -> None:
        super().__init__("the server is shutting down and accepts no new work; retry on another replica")


class GenerationFailed(Exception):
    """The pipeline raised; the message says why (mapped to 503, never 500)."""


@dataclass
class Outcome(Generic[R]):
    value: R
    queue_seconds: float
    run_seconds: float
    batch_images: int  # images in the pipeline call that produced this


@dataclass(eq=False)
class _Job:
    item: Any
    images: int
    key: Hashable
    future: asyncio.Future[Outcome[Any]]
    admitted: float = field(default_factory=time.perf_counter)
    started: float | None = None
    cancelled: bool = False


class Batcher:
    def __init__(
        self,
        run_batch: RunBatch,
        *,
        queue_size: int,
        max_batch_images: Callable[[], int],
        on_change: Callable[[int, int], None] | None = None,
        on_batch: Callable[[int, float], None] | None = None,
    ) -> None:
        """`on_change(queue_depth, in_flight)` after every admission/completion;
        `on_batch(images, seconds)` after every pipeline call."""
        self._run_batch = run_batch
        self.queue_size = queue_size
        self._max_batch_images = max_batch_images
        self._on_change = on_change
        self._on_batch = on_batch
        self._pending: collections.deque[_Job] = collections.deque()
        self._running: list[_Job] = []
        self._in_flight = 0
        self._closing = False
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        # One thread: the model is called by one caller at a time.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="model")
        self._batch_seconds = 1.0  # moving average, for Retry-After

    # --- state -------------------------------------------------------------------------------
    @property
    def queue_depth(self) -> int:
        return len(self._pending)

    @property
    def in_flight(self) -> int:
        """Admitted requests not yet answered (waiting or generating)."""
        return self._in_flight

    @property
    def closing(self) -> bool:
        return self._closing

    def retry_after(self) -> int:
        """Seconds until a slot is likely free: the batches ahead of a new request."""
        budget = max(1, self._max_batch_images())
        batches_ahead = math.ceil(len(self._pending) / budget) + 1
        return max(1, min(3600, math.ceil(self._batch_seconds * batches_ahead)))

    def _changed(self) -> None:
        if self._on_change is not None:
            self._on_change(len(self._pending), self._in_flight)

    # --- lifecycle ---------------------------------------------------------------------------
    def start(self) -> None:
        """Start the worker on the running event loop (the app's lifespan calls this)."""
        if self._task is None:
            self._wake = asyncio.Event()
            self._task = asyncio.get_running_loop().create_task(self._work(), name="batcher")

    async def drain(self, timeout: float) -> None:
        """Refuse new work, finish what was accepted (up to `timeout` seconds), stop the worker."""
        self._closing = True
        if self._wake is not None:
            self._wake.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._task), timeout)
            except asyncio.TimeoutError:
                log.error("drain: %d request(s) unfinished after %g s; abandoning them",
                          len(self._pending) + len(self._running), timeout)
                for job in list(self._pending) + self._running:
                    job.cancelled = True
                    if not job.future.done():
                        job.future.set_exception(Draining())
                self._pending.clear()
                self._task.cancel()
        self._executor.shutdown(wait=False)

    # --- requests ----------------------------------------------------------------------------
    async def submit(self, item: Any, *, images: int, key: Hashable, timeout: float) -> Outcome[Any]:
        if self._closing or self._task is None:
            raise Draining()
        if len(self._pending) >= self.queue_size:
            raise QueueFull(self.retry_after(), self.queue_size)
        loop = asyncio.get_running_loop()
        job = _Job(item=item, images=images, key=key, future=loop.create_future())
        self._pending.append(job)
        self._in_flight += 1
        self._changed()
        assert self._wake is not None
        self._wake.set()
        try:
            # shield: a timeout must not cancel the future the worker will complete.
            return await asyncio.wait_for(asyncio.shield(job.future), timeout)
        except asyncio.TimeoutError:
            self._abandon(job)
            raise RequestTimedOut(timeout, started=job.started is not None) from None
        except asyncio.CancelledError:
            self._abandon(job)
            raise
        finally:
            self._in_flight -= 1
            self._changed()

    def _abandon(self, job: _Job) -> None:
        job.cancelled = True
        if job in self._pending:
            self._pending.remove(job)
        if not job.future.done():
            job.future.cancel()

    # --- the worker --------------------------------------------------------------------------
    def _take_batch(self) -> list[_Job]:
        """The oldest job plus later jobs with its key, within the image budget."""
        first = self._pending.popleft()
        batch = [first]
        budget = max(1, self._max_batch_images()) - first.images
        for job in list(self._pending):
            if budget <= 0:
                break
            if job.key == first.key and job.images <= budget:
                self._pending.remove(job)
                batch.append(job)
                budget -= job.images
        return batch

    async def _work(self) -> None:
        assert self._wake is not None
        loop = asyncio.get_running_loop()
        while True:
            while not self._pending:
                if self._closing:
                    return
                self._wake.clear()
                await self._wake.wait()
            batch = self._take_batch()
            self._changed()
            started = time.perf_counter()
            for job in batch:
                job.started = started
            self._running = batch

            def should_stop(batch: list[_Job] = batch) -> bool:
                return all(job.cancelled for job in batch)

            try:
                results = await loop.run_in_executor(
                    self._executor, self._run_batch, [job.item for job in batch], should_stop)
                if len(results) != len(batch):
                    raise RuntimeError(f"the backend returned {len(results)} results for {len(batch)} requests")
            except GenerationCancelled:
                log.info("stopped a batch of %d request(s) whose clients all gave up (timed out or gone)", len(batch))
                continue
            except Exception as err:  # any pipeline failure becomes an answer, never a crash
                log.exception("generation failed for a batch of %d request(s)", len(batch))
                for job in batch:
                    if not job.future.done():
                        job.future.set_exception(GenerationFailed(f"generation failed: {type(err).__name__}: {err}"))
                continue
            finally:
                self._running = []
            seconds = time.perf_counter() - started
            self._batch_seconds = 0.7 * self._batch_seconds + 0.3 * seconds
            images = sum(job.images for job in batch)
            if self._on_batch is not None:
                self._on_batch(images, seconds)
            for job, value in zip(batch, results, strict=True):
                if not job.future.done():
                    job.future.set_result(Outcome(value=value, queue_seconds=started - job.admitted,
                                                  run_seconds=seconds, batch_images=images))
