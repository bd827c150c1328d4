"""The served model: a backend plus its load state (`load()`, `ready`), as /readyz reports it."""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import Any

from sdxl_workloads.server.backends import Backend, GenerationParams, ModelLimits, ShouldStop

log = logging.getLogger(__name__)


class ServedModel:
    def __init__(self, backend: Backend) -> None:
        self.backend = backend
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
            except BaseException as err:
                self._error = f"{type(err).__name__}: {err}"
                raise
            self._limits = limits
            log.info("model %s loaded: %s", self.description, limits)

    def generate(self, batch: Sequence[GenerationParams], should_stop: ShouldStop) -> list[list[Any]]:
        if self._limits is None:
            raise RuntimeError("the model is not loaded yet")
        return self.backend.generate(batch, should_stop)
