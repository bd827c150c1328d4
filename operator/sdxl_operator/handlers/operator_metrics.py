"""The operator's own Prometheus metrics: reconciles per kind and outcome, errors, API request latency.

Each :class:`OperatorMetrics` has a registry of its own (not prometheus_client's global one), so the
tests can run several operators in one process. ``sdxl-operator run --metrics-port`` serves it on
``/metrics`` (the Helm chart's Service and ServiceMonitor scrape it).

Kopf has no middleware for handlers, so :func:`instrument_handlers` replaces each registered
resource handler's function (creation, resumption, update and event handlers) with one that counts its
outcome; Kopf keeps calling it the same way (every keyword argument, coroutine or not).
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import inspect
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import kopf
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.exposition import start_http_server

from sdxl_operator.core.custom_resources import DEPLOYMENTS, FINETUNES

# What a handler run ended with. "retry": a kopf.TemporaryError (waiting for something); "failed": a
# kopf.PermanentError (the resource is marked Failed); "error": anything else (Kopf retries it).
OUTCOMES = ("success", "retry", "failed", "error")
# The kinds of our custom resources by plural, so the label reads as `kubectl get` names them.
KIND_OF_PLURAL = {FINETUNES: "SDXLFineTune", DEPLOYMENTS: "SDXLDeployment"}
# API calls take milliseconds on a healthy cluster; seconds mean throttling or an overloaded server.
API_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class OperatorMetrics:
    """The counters and histograms of one operator, in a registry of their own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.reconciles = Counter(
            "sdxl_operator_reconciles", "Handler runs of the operator, by resource kind and outcome.",
            ("kind", "outcome"), registry=self.registry)
        self.errors = Counter(
            "sdxl_operator_reconcile_errors",
            "Handler runs that raised, by resource kind and exception type (retry, failed and error outcomes).",
            ("kind", "error"), registry=self.registry)
        self.api_latency = Histogram(
            "sdxl_operator_api_request_duration_seconds",
            "Kubernetes API requests of the operator's handlers, by verb and kind, answered or not.",
            ("verb", "kind"), buckets=API_LATENCY_BUCKETS, registry=self.registry)
        self.api_errors = Counter(
            "sdxl_operator_api_request_errors",
            "Kubernetes API requests that failed, by verb, kind and HTTP status (none: no answer).",
            ("verb", "kind", "code"), registry=self.registry)

    def record_reconcile(self, kind: str, error: BaseException | None) -> None:
        """Count one handler run of ``kind`` that ended with ``error`` (None: it succeeded)."""
        self.reconciles.labels(kind=kind, outcome=outcome_of(error)).inc()
        if error is not None:
            self.errors.labels(kind=kind, error=type(error).__name__).inc()

    @contextmanager
    def api_request(self, verb: str, kind: str) -> Iterator[None]:
        """Time one API request; a failure also counts in ``api_errors`` with its HTTP status."""
        started = time.monotonic()
        try:
            yield
        except Exception as exc:
            status = getattr(exc, "status", None)
            self.api_errors.labels(verb=verb, kind=kind, code=str(status) if status else "none").inc()
            raise
        finally:
            self.api_latency.labels(verb=verb, kind=kind).observe(time.monotonic() - started)

    def serve(self, port: int, address: str = "0.0.0.0") -> Callable[[], None]:
        """Serve ``/metrics`` on ``address:port`` in a daemon thread; returns the function that stops it."""
        server, thread = start_http_server(port, addr=address, registry=self.registry)

        def stop() -> None:
            server.shutdown()
            server.server_close()
            thread.join(timeout=5)

        return stop


def outcome_of(error: BaseException | None) -> str:
    """The outcome label of a handler run that raised ``error`` (None: it succeeded)."""
    if error is None:
        return "success"
    if isinstance(error, kopf.TemporaryError):
        return "retry"
    if isinstance(error, kopf.PermanentError):
        return "failed"
    return "error"


def kind_label(selector: Any) -> str:
    """The kind label of a handler registered for ``selector`` (a Kopf selector, or None): our kinds by
    name, others by the plural they were registered with."""
    name = (selector.plural or selector.any_name or selector.kind) if selector is not None else None
    return KIND_OF_PLURAL.get(name or "", name or "unknown")


def counted(fn: Callable[..., Any], kind: str, metrics: OperatorMetrics) -> Callable[..., Any]:
    """``fn`` (a Kopf handler, coroutine or not) that records each run's outcome in ``metrics``."""
    if inspect.iscoroutinefunction(fn):
        @functools.wraps(fn)
        async def counted_async(**kwargs: Any) -> Any:
            try:
                result = await fn(**kwargs)
            except asyncio.CancelledError:
                raise  # the operator is stopping, or the resource went away: no outcome
            except Exception as exc:
                metrics.record_reconcile(kind, exc)
                raise
            metrics.record_reconcile(kind, None)
            return result

        return counted_async

    @functools.wraps(fn)
    def counted_sync(**kwargs: Any) -> Any:
        try:
            result = fn(**kwargs)
        except Exception as exc:
            metrics.record_reconcile(kind, exc)
            raise
        metrics.record_reconcile(kind, None)
        return result

    return counted_sync


def instrument_handlers(registry: kopf.OperatorRegistry, metrics: OperatorMetrics) -> int:
    """Count the outcome of the resource handlers in ``registry`` (changing and event ones); how many.

    Reaches into the registries' handler lists: Kopf (1.45) offers no public way to wrap handlers,
    and its handlers are frozen dataclasses, replaced here with a copy holding the counting function.
    The operator registers no timers or daemons (its status ticks are its own: :mod:`status_ticker`).
    """
    instrumented = 0
    handler_lists: tuple[list[Any], ...] = (registry._changing._handlers, registry._watching._handlers)
    for handlers in handler_lists:
        for index, handler in enumerate(handlers):
            kind = kind_label(handler.selector)
            handlers[index] = dataclasses.replace(handler, fn=counted(handler.fn, kind, metrics))
            instrumented += 1
    return instrumented
