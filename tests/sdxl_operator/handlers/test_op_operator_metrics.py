"""The operator's own metrics: handler outcomes per kind, API request latency per verb and kind, /metrics."""

from __future__ import annotations

import asyncio
import contextlib
import http.server
import inspect
import json
import socket
import threading
import urllib.request
from collections.abc import Iterator
from typing import Any

import kopf
import pytest

from sdxl_operator.core.settings import OperatorSettings
from sdxl_operator.handlers.kube_api import KubeApi, KubeApiError
from sdxl_operator.handlers.operator_metrics import OperatorMetrics, counted, instrument_handlers, outcome_of
from sdxl_operator.handlers.operator_registry import build_registry


def _value(metrics: OperatorMetrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0


@pytest.mark.parametrize(
    ("error", "outcome"),
    [
        (None, "success"),
        (kopf.TemporaryError("waiting for the fine-tune", delay=10), "retry"),
        (kopf.PermanentError("spec.baseModel is not a model"), "failed"),
        (RuntimeError("bug"), "error"),
        (KubeApiError("cannot reach the Kubernetes API server", None), "error"),
    ],
)
def test_outcome_of_a_handler_run(error: BaseException | None, outcome: str) -> None:
    assert outcome_of(error) == outcome


@pytest.mark.asyncio
async def test_counted_coroutine_records_each_outcome_and_error_type() -> None:
    metrics = OperatorMetrics()
    raised: list[BaseException | None] = [None, kopf.TemporaryError("later"), ValueError("bad"), None]

    async def handler(**_: Any) -> None:
        error = raised.pop(0)
        if error is not None:
            raise error

    wrapped = counted(handler, "SDXLFineTune", metrics)
    assert inspect.iscoroutinefunction(wrapped)  # Kopf awaits it instead of running it in a thread
    for _ in range(4):
        with contextlib.suppress(kopf.TemporaryError, ValueError):
            await wrapped(body={}, logger=None)
    assert _value(metrics, "sdxl_operator_reconciles_total", kind="SDXLFineTune", outcome="success") == 2
    assert _value(metrics, "sdxl_operator_reconciles_total", kind="SDXLFineTune", outcome="retry") == 1
    assert _value(metrics, "sdxl_operator_reconciles_total", kind="SDXLFineTune", outcome="error") == 1
    assert _value(metrics, "sdxl_operator_reconcile_errors_total", kind="SDXLFineTune", error="TemporaryError") == 1
    assert _value(metrics, "sdxl_operator_reconcile_errors_total", kind="SDXLFineTune", error="ValueError") == 1


@pytest.mark.asyncio
async def test_a_cancelled_handler_has_no_outcome() -> None:
    metrics = OperatorMetrics()

    async def handler(**_: Any) -> None:
        raise asyncio.CancelledError

    with pytest.raises(asyncio.CancelledError):
        await counted(handler, "SDXLDeployment", metrics)()
    assert metrics.registry.get_sample_value("sdxl_operator_reconciles_total",
                                             {"kind": "SDXLDeployment", "outcome": "error"}) is None


def test_counted_plain_function_stays_plain_and_returns_its_value() -> None:
    metrics = OperatorMetrics()
    wrapped = counted(lambda **kwargs: kwargs["x"] * 2, "deployments", metrics)
    assert not inspect.iscoroutinefunction(wrapped)
    assert wrapped(x=21) == 42
    with pytest.raises(kopf.PermanentError):
        counted(_raise_permanent, "deployments", metrics)()
    assert _value(metrics, "sdxl_operator_reconciles_total", kind="deployments", outcome="success") == 1
    assert _value(metrics, "sdxl_operator_reconciles_total", kind="deployments", outcome="failed") == 1


def _raise_permanent(**_: Any) -> None:
    raise kopf.PermanentError("spec.accelerator")


def test_every_changing_and_event_handler_of_the_operator_is_counted_under_its_kind() -> None:
    context_metrics = OperatorMetrics()
    registry = kopf.OperatorRegistry()
    plain = build_registry(OperatorSettings())
    handlers = [*plain._changing._handlers, *plain._watching._handlers]
    registry._changing._handlers = list(plain._changing._handlers)
    registry._spawning._handlers = list(plain._spawning._handlers)
    registry._watching._handlers = list(plain._watching._handlers)
    assert instrument_handlers(registry, context_metrics) == len(handlers) > 0
    instrumented = [*registry._changing._handlers, *registry._watching._handlers]
    for before, after in zip(handlers, instrumented, strict=True):
        assert after.id == before.id and after.selector == before.selector
        assert after.fn is not before.fn and after.fn.__wrapped__ is before.fn  # type: ignore[attr-defined]
        assert inspect.iscoroutinefunction(after.fn) == inspect.iscoroutinefunction(before.fn)
    by_name = {str(h.selector.any_name) for h in instrumented if h.selector is not None}
    assert {"sdxlfinetunes", "sdxldeployments"} <= by_name
    # Timers are left to Kopf as they are (see instrument_handlers).
    assert registry._spawning._handlers == plain._spawning._handlers


def test_the_operators_registry_is_instrumented() -> None:
    registry = build_registry(OperatorSettings())
    for handler in [*registry._changing._handlers, *registry._watching._handlers]:
        assert hasattr(handler.fn, "__wrapped__"), handler.id
    for handler in registry._spawning._handlers:
        assert not hasattr(handler.fn, "__wrapped__"), handler.id


class _ListHandler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = json.dumps({"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": []}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: Any) -> None:
        pass


@pytest.fixture
def api_server() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _ListHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.asyncio
async def test_api_requests_are_timed_by_verb_and_kind(api_server: str) -> None:
    metrics = OperatorMetrics()
    api = KubeApi.for_server(api_server, metrics=metrics)
    try:
        assert await api.list_pods("team-a", "app=x") == []
        assert await api.list_pods("team-a", "app=y") == []
    finally:
        await api.close()
    assert _value(metrics, "sdxl_operator_api_request_duration_seconds_count", verb="list", kind="Pod") == 2
    assert _value(metrics, "sdxl_operator_api_request_duration_seconds_sum", verb="list", kind="Pod") > 0


@pytest.mark.asyncio
async def test_unanswered_api_requests_count_as_errors_without_a_code() -> None:
    metrics = OperatorMetrics()
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{probe.getsockname()[1]}"
    api = KubeApi.for_server(closed, metrics=metrics)
    try:
        with pytest.raises(KubeApiError):
            await api.list_jobs("team-a", "app=x")
    finally:
        await api.close()
    assert _value(metrics, "sdxl_operator_api_request_errors_total", verb="list", kind="Job", code="none") == 1
    assert _value(metrics, "sdxl_operator_api_request_duration_seconds_count", verb="list", kind="Job") == 1


def test_metrics_are_served_on_their_port() -> None:
    metrics = OperatorMetrics()
    metrics.record_reconcile("SDXLDeployment", None)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    stop = metrics.serve(port, address="127.0.0.1")
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
            text = response.read().decode()
    finally:
        stop()
    assert 'sdxl_operator_reconciles_total{kind="SDXLDeployment",outcome="success"} 1.0' in text
    assert "# TYPE sdxl_operator_api_request_duration_seconds histogram" in text
