"""The served model: a backend plus its load state (`load()`, `ready`), as /readyz reports it.

`load()` ends with a warm-up: one small generation at the model's default (for Neuron: compiled)
size, before the model counts as ready. The first real request would otherwise pay what libraries
defer to the first call: optimum-neuron loads the compiled UNet lazily onto the NeuronCores (45-60 s
reported for SDXL), CUDA allocates its memory pool and selects kernels. Readiness then means what a
load balancer takes it to mean: the next request is served at full speed.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from typing import Any

from sdxl_workloads.server.backends import Backend, GenerationParams, ModelLimits, ShouldStop

log = logging.getLogger(__name__)


# Denoising steps of the warm-up generation: enough to run every stage (text encoders, UNet with
# classifier-free guidance, scheduler, VAE decode) once, and short of a real request's cost.
WARMUP_STEPS = 2
WARMUP_PROMPT = "a photo"


class ServedModel:
    def __init__(self, backend: Backend, warmup_steps: int = WARMUP_STEPS) -> None:
        """`warmup_steps` 0 skips the warm-up (only for tests of load failures and states)."""
        self.backend = backend
        self.warmup_steps = warmup_steps
        self._limits: ModelLimits | None = None
        self._error: str | None = None
        self._lock = threading.Lock()

    @property
    def description(self) -> str:
        return self.backend.description

    @property
    def ready(self) -> bool:
        return self._limits is not None

    @property
    def error(self) -> str | None:
        """Why loading failed, or None."""
        return self._error

    @property
    def limits(self) -> ModelLimits:
        if self._limits is None:
            raise RuntimeError("the model is not loaded yet")
        return self._limits

    def load(self) -> None:
        """Load the weights (slow: call it off the event loop). Raises what the backend raises,
        after recording it for /readyz."""
        with self._lock:
            if self._limits is not None:
                return
            try:
                limits = self.backend.load()
                self._warm_up(limits)
            except BaseException as err:
                self._error = f"{type(err).__name__}: {err}"
                raise
            self._limits = limits
            log.info("model %s loaded: %s", self.description, limits)

    def _warm_up(self, limits: ModelLimits) -> None:
        """One generation at the default size; a model that cannot make it is not ready (the
        failure is a load failure, reported as such)."""
        if self.warmup_steps < 1:
            return
        started = time.perf_counter()
        params = GenerationParams(prompt=WARMUP_PROMPT, negative_prompt=None, num_inference_steps=self.warmup_steps,
                                  guidance_scale=5.0, width=limits.default_width, height=limits.default_height,
                                  seed=0, num_images=1)
        self.backend.generate([params], lambda: False)
        log.info("warm-up generation (%dx%d, %d steps) took %.1f s", params.width, params.height,
                 params.num_inference_steps, time.perf_counter() - started)

    @property
    def serves_adapters(self) -> bool:
        """True for a backend of several fine-tunes chosen per request (MultiAdapterBackend)."""
        return hasattr(self.backend, "has_adapter")

    def has_adapter(self, name: str) -> bool:
        has = getattr(self.backend, "has_adapter", None)
        return bool(has(name)) if has is not None else False

    def generate(self, batch: Sequence[GenerationParams], should_stop: ShouldStop) -> list[list[Any]]:
        if self._limits is None:
            raise RuntimeError("the model is not loaded yet")
        return self.backend.generate(batch, should_stop)
