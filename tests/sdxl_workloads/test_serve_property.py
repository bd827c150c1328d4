"""Property-based: schemathesis generates requests from the server's own OpenAPI document
(valid and invalid bodies, headers, methods) and sends them to a real uvicorn on loopback
serving the tiny model. No request may get a 5xx. Kept bounded: few examples per operation and
a server capped at 3 steps and 2 images per request."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from sdxl_workloads.server.app import create_app
from sdxl_workloads.server.diffusers_backend import DiffusersBackend
from sdxl_workloads.server.model import ServedModel
from sdxl_workloads.server.settings import ServerSettings

pytestmark = pytest.mark.compat


@pytest.fixture(scope="module")
def live_server(tiny_model_path: Path) -> Iterator[str]:
    import uvicorn

    model = ServedModel(DiffusersBackend(str(tiny_model_path)))
    model.load()
    app = create_app(model, ServerSettings(default_steps=1, max_steps=3, max_images=2, request_timeout=120))
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=lambda: asyncio.run(server.serve()), daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, "server did not start"
        time.sleep(0.05)
    yield url
    server.should_exit = True
    thread.join(30)


def operations(url: str) -> list[schemathesis.APIOperation]:
    loaded = schemathesis.openapi.from_url(f"{url}/openapi.json")
    return [result.ok() for result in loaded.get_all_operations()]


# schemathesis' own pytest integration (from_fixture) does not run under this pytest version, so
# its strategies are driven with hypothesis directly: the same generated cases, one loop.
@pytest.mark.slow
@pytest.mark.parametrize("mode", list(schemathesis.GenerationMode), ids=lambda m: m.value)
def test_no_request_gets_a_server_error(live_server: str, mode: schemathesis.GenerationMode) -> None:
    found = operations(live_server)
    assert {op.path for op in found} >= {"/v1/generate", "/v1/images/generations", "/healthz"}
    statuses: list[int] = []

    @settings(max_examples=8, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True,
              database=None)
    def no_server_error(case: schemathesis.Case) -> None:
        response = case.call(base_url=live_server, timeout=120)
        statuses.append(response.status_code)
        assert response.status_code < 500, (
            f"{case.method} {case.path} headers={case.headers!r} body={case.body!r} -> "
            f"{response.status_code} {response.text[:500]}")

    for operation in found:
        if mode is schemathesis.GenerationMode.NEGATIVE and operation.method.upper() != "POST":
            continue  # a GET without parameters has no invalid form
        given(case=operation.as_strategy(generation_mode=mode))(no_server_error)()
    # The run exercised both sides: accepted requests and refused ones.
    if mode is schemathesis.GenerationMode.POSITIVE:
        assert 200 in statuses
    else:
        assert any(400 <= status < 500 for status in statuses)
