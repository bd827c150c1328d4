"""Property-based: schemathesis generates requests from the server's own OpenAPI document
(valid and invalid bodies, headers, methods) and sends them to a real uvicorn on loopback
serving the tiny model. No request may get a 5xx. Kept bounded: few examples per operation and
a server capped at 3 steps and 2 images per request.

Run twice: against an open server, and against one started with an API key (how the chart runs it)
with the fuzzer sending the key, so the generated requests reach past authentication to the model."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from sdxl_workloads.server.app import create_app
from sdxl_workloads.server.diffusers_backend import DiffusersBackend
from sdxl_workloads.server.model import ServedModel
from sdxl_workloads.server.serve_command import uvicorn_config
from sdxl_workloads.server.settings import ServerSettings

pytestmark = pytest.mark.compat
API_KEY = "fuzz-test-key-0123456789"


@dataclass(frozen=True)
class Live:
    url: str
    headers: dict[str, str]  # what every fuzzed request carries (the API key, when the server has one)


@pytest.fixture(scope="module")
def loaded(tiny_model_path: Path) -> ServedModel:
    model = ServedModel(DiffusersBackend(str(tiny_model_path)))
    model.load()
    return model


@pytest.fixture(scope="module", params=["open", "api-key"])
def live_server(request: pytest.FixtureRequest, loaded: ServedModel) -> Iterator[Live]:
    import uvicorn

    api_key = API_KEY if request.param == "api-key" else None
    settings = ServerSettings(default_steps=1, max_steps=3, max_images=2, request_timeout=120, api_key=api_key)
    app = create_app(loaded, settings)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    config = uvicorn_config(app, settings, "127.0.0.1", port, log_level="warning")  # as `sdxl-workload serve` runs it
    server = uvicorn.Server(config)
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
    if api_key is not None:  # the key is really required, so the run below goes through it
        refused = httpx.post(f"{url}/v1/generate", json={"prompt": "a photo"}, timeout=30)
        assert refused.status_code == 401, refused.text
    yield Live(url, {"Authorization": f"Bearer {api_key}"} if api_key else {})
    server.should_exit = True
    thread.join(30)


def operations(url: str) -> list[schemathesis.APIOperation]:
    loaded = schemathesis.openapi.from_url(f"{url}/openapi.json")
    return [result.ok() for result in loaded.get_all_operations()]


# schemathesis' own pytest integration (from_fixture) does not run under this pytest version, so
# its strategies are driven with hypothesis directly: the same generated cases, one loop.
@pytest.mark.slow
@pytest.mark.parametrize("mode", list(schemathesis.GenerationMode), ids=lambda m: m.value)
def test_no_request_gets_a_server_error(live_server: Live, mode: schemathesis.GenerationMode) -> None:
    found = operations(live_server.url)
    assert {op.path for op in found} >= {"/v1/generate", "/v1/images/generations", "/healthz"}
    statuses: list[int] = []

    @settings(max_examples=8, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True,
              database=None)
    def no_server_error(case: schemathesis.Case) -> None:
        response = case.call(base_url=live_server.url, headers={**(case.headers or {}), **live_server.headers},
                             timeout=120)
        statuses.append(response.status_code)
        assert response.status_code < 500, (
            f"{case.method} {case.path} headers={case.headers!r} body={case.body!r} -> "
            f"{response.status_code} {response.text[:500]}")

    for operation in found:
        if mode is schemathesis.GenerationMode.NEGATIVE and operation.method.upper() != "POST":
            continue  # a GET without parameters has no invalid form
        given(case=operation.as_strategy(generation_mode=mode))(no_server_error)()
    # The run exercised both sides: accepted requests and refused ones (never for want of the key).
    if live_server.headers:
        assert 401 not in statuses
    if mode is schemathesis.GenerationMode.POSITIVE:
        assert 200 in statuses
    else:
        assert any(400 <= status < 500 for status in statuses)
