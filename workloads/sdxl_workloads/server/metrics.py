"""Prometheus metrics, in a registry of their own per app (two apps in one process, as in the
tests, never collide in the global registry)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from sdxl_contract.server_metrics import IN_FLIGHT, QUEUE_DEPTH

# From a tiny CPU model (tens of ms) to SDXL at 50 steps on a slow device (minutes).
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600)

# The `adapter` label of requests that name no adapter: no fine-tune can be called this (Kubernetes
# names start with a letter or digit).
BASE_LABEL = "_base"

# Closed list of rejection reasons (the `reason` label).
REJECTION_REASONS = ("invalid", "unauthorized", "too_large", "queue_full", "timeout", "not_ready",
                     "shutting_down", "generation_failed", "not_acceptable", "body_timeout", "client_gone",
                     "unknown_adapter")


class ServerMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.request_latency = Histogram(
            "sdxl_request_duration_seconds", "Time from admission to answer of generation requests that succeeded",
            ["endpoint"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self.images_generated = Counter(
            "sdxl_images_generated", "Images returned to clients", registry=self.registry)
        self.queue_depth = Gauge(
            QUEUE_DEPTH, "Requests waiting for the model", registry=self.registry)
        self.in_flight = Gauge(
            IN_FLIGHT, "Generation requests admitted and not yet answered", registry=self.registry)
        self.rejections = Counter(
            "sdxl_requests_rejected", "Requests answered with an error, by reason", ["reason"],
            registry=self.registry)
        self.batch_images = Histogram(
            "sdxl_batch_images", "Images per pipeline call (micro-batching)",
            buckets=(1, 2, 3, 4, 6, 8, 12, 16, 32), registry=self.registry)
        self.batch_seconds = Histogram(
            "sdxl_batch_duration_seconds", "Duration of one pipeline call", buckets=LATENCY_BUCKETS,
            registry=self.registry)
        # Per adapter (fine-tune) of a multi-adapter server; BASE_LABEL for requests naming none.
        self.adapter_requests = Counter(
            "sdxl_adapter_requests", "Generation requests answered, by adapter", ["adapter"], registry=self.registry)
        self.adapter_latency = Histogram(
            "sdxl_adapter_request_duration_seconds", "Time from admission to answer, by adapter", ["adapter"],
            buckets=LATENCY_BUCKETS, registry=self.registry)
        self.adapter_loads = Counter(
            "sdxl_adapter_loads", "Adapters read from their URI into memory", ["adapter"], registry=self.registry)
        self.adapter_load_seconds = Histogram(
            "sdxl_adapter_load_duration_seconds", "Time to read an adapter into memory", buckets=LATENCY_BUCKETS,
            registry=self.registry)
        self.adapter_evictions = Counter(
            "sdxl_adapter_evictions", "Adapters dropped from memory (least recently used, or removed)", ["adapter"],
            registry=self.registry)
        self.model_ready = Gauge("sdxl_model_ready", "1 once the model is loaded", registry=self.registry)
        for reason in REJECTION_REASONS:  # export zeros, so rate() works from the first scrape
            self.rejections.labels(reason=reason)

    def adapter_event(self, event: str, adapter: str, seconds: float) -> None:
        """An AdapterObserver: "load" or "evict" of one adapter."""
        if event == "load":
            self.adapter_loads.labels(adapter=adapter).inc()
            self.adapter_load_seconds.observe(seconds)
        elif event == "evict":
            self.adapter_evictions.labels(adapter=adapter).inc()

    def adapter_answered(self, adapter: str | None, seconds: float) -> None:
        label = BASE_LABEL if adapter is None else adapter
        self.adapter_requests.labels(adapter=label).inc()
        self.adapter_latency.labels(adapter=label).observe(seconds)

    def reject(self, reason: str) -> None:
        if reason not in REJECTION_REASONS:
            raise ValueError(f"unknown rejection reason {reason!r}")
        self.rejections.labels(reason=reason).inc()

    def queue_changed(self, depth: int, in_flight: int) -> None:
        self.queue_depth.set(depth)
        self.in_flight.set(in_flight)

    def batch_done(self, images: int, seconds: float) -> None:
        self.batch_images.observe(images)
        self.batch_seconds.observe(seconds)

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
