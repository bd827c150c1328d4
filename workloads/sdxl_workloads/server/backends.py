"""What the server asks of a model backend, and the shared request/limit types.

A backend turns a micro-batch of compatible requests into PIL images with one pipeline call
(or, for a statically compiled Neuron model, as many calls of the compiled batch as needed).
Backends: `diffusers_backend.DiffusersBackend` (cpu, nvidia) and `neuron_backend.NeuronBackend`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

# Asked between denoising steps; True means every request of the batch has given up (timed out,
# or its client disconnected), so the backend should stop spending compute on it.
ShouldStop = Callable[[], bool]


class GenerationCancelled(Exception):
    """The batch was abandoned between steps because all its requests had given up."""


@dataclass(frozen=True)
class GenerationParams:
    """One validated request with every default filled in."""

    prompt: str
    negative_prompt: str | None
    num_inference_steps: int
    guidance_scale: float
    width: int
    height: int
    seed: int
    num_images: int = 1
    # The adapter (fine-tune name) a multi-adapter server applies; None = the base model.
    adapter: str | None = None

    def batch_key(self) -> tuple[Any, ...]:
        """Requests with equal keys can share one pipeline call. A negative prompt's presence
        matters: SDXL uses zero embeddings for an absent one but encodes an empty string. One pipeline
        call applies one adapter, so the adapter is part of the key."""
        return (self.adapter, self.width, self.height, self.num_inference_steps, self.guidance_scale,
                self.negative_prompt is not None)

    def image_seeds(self) -> list[int]:
        """Image k is seeded with seed + k, each with its own generator, so an image does not
        depend on which other requests shared its batch."""
        return [self.seed + k for k in range(self.num_images)]


@dataclass(frozen=True)
class ModelLimits:
    """What the loaded model accepts, learned at load time."""

    default_width: int
    default_height: int
    min_side: int
    max_side: int
    # A Neuron model is compiled for one size; every request must use it.
    fixed_size: tuple[int, int] | None = None
    # Images one pipeline call can carry (the compiled batch for Neuron); None = no limit of its own.
    max_batch_images: int | None = None

    def size_problem(self, width: int, height: int) -> tuple[str, str] | None:
        """(field, message) when the model cannot make this size; None when it can."""
        if self.fixed_size is not None:
            fixed_w, fixed_h = self.fixed_size
            for field, value, fixed in (("width", width, fixed_w), ("height", height, fixed_h)):
                if value != fixed:
                    return field, (f"this model was compiled for {fixed_w}x{fixed_h} images only; "
                                   f"{field} must be {fixed}, got {value} (or leave it out)")
            return None
        for field, value in (("width", width), ("height", height)):
            if not self.min_side <= value <= self.max_side:
                return field, (f"must be within {self.min_side}..{self.max_side} for this model "
                               f"(default {self.default_width}x{self.default_height}), got {value}")
        return None


class Backend(Protocol):
    """A model the server can load once and call from one worker thread."""

    description: str

    def load(self) -> ModelLimits:
        """Load weights (slow; runs off the event loop) and say what the model accepts."""
        ...

    def generate(self, batch: Sequence[GenerationParams], should_stop: ShouldStop) -> list[list[Any]]:
        """Images for each request of a compatible batch, in order (PIL images)."""
        ...
