"""The server's tunables in one typed place (filled from `sdxl-workload serve` flags)."""

from __future__ import annotations

from dataclasses import dataclass

from sdxl_workloads.server.schemas import MAX_IMAGES, MAX_STEPS

# Headers and a 64 KiB body take milliseconds from any real client; seconds more only serve
# clients that hold connections open on purpose (read_deadlines.py).
DEFAULT_HEADER_TIMEOUT = 10.0
DEFAULT_BODY_TIMEOUT = 10.0

# Request bodies are small JSON objects (a prompt of at most a few thousand characters);
# anything much larger is a mistake or abuse and is refused before it is read into memory.
DEFAULT_MAX_BODY_BYTES = 64 * 1024


@dataclass(frozen=True)
class ServerSettings:
    max_batch: int = 1  # most images one pipeline call may carry (micro-batching of compatible requests)
    queue_size: int = 8  # requests that may wait for the model; one more gets 429
    request_timeout: float = 300.0  # seconds from admission to answer (queue wait + generation); then 504
    api_key: str | None = None  # when set, /v1/* needs it as a Bearer token or X-API-Key
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES  # larger request bodies get 413
    default_steps: int = 25  # num_inference_steps when a request gives none (SDXL's usual 25-30)
    max_steps: int = 150  # most num_inference_steps one request may ask for
    max_images: int = 8  # most images one request may ask for
    default_guidance: float = 5.0  # guidance_scale when a request gives none
    drain_timeout: float | None = None  # seconds shutdown waits for accepted work; None = request_timeout
    header_timeout: float = DEFAULT_HEADER_TIMEOUT  # seconds a request's headers may take to arrive; then closed
    body_timeout: float = DEFAULT_BODY_TIMEOUT  # seconds its body may take after the headers; then 408

    def __post_init__(self) -> None:
        problems = []
        if self.max_batch < 1:
            problems.append(f"max_batch must be >= 1, got {self.max_batch}")
        if self.queue_size < 1:
            problems.append(f"queue_size must be >= 1, got {self.queue_size}")
        if not self.request_timeout > 0:
            problems.append(f"request_timeout must be > 0 seconds, got {self.request_timeout}")
        if self.max_body_bytes < 1024:
            problems.append(f"max_body_bytes must be >= 1024, got {self.max_body_bytes}")
        if not 1 <= self.max_steps <= MAX_STEPS:
            problems.append(f"max_steps must be within 1..{MAX_STEPS}, got {self.max_steps}")
        if not 1 <= self.default_steps <= self.max_steps:
            problems.append(f"default_steps must be within 1..max_steps ({self.max_steps}), got {self.default_steps}")
        if not 1 <= self.max_images <= MAX_IMAGES:
            problems.append(f"max_images must be within 1..{MAX_IMAGES}, got {self.max_images}")
        for name in ("header_timeout", "body_timeout"):
            if not getattr(self, name) > 0:
                problems.append(f"{name} must be > 0 seconds, got {getattr(self, name)}")
        if self.api_key is not None and not self.api_key:
            problems.append("api_key must not be empty (leave it unset to serve without a key)")
        if problems:
            raise ValueError("; ".join(problems))

    @property
    def effective_drain_timeout(self) -> float:
        return self.request_timeout if self.drain_timeout is None else self.drain_timeout
