"""Clients that hold the server's resources without using them, against a real uvicorn on loopback
configured as `sdxl-workload serve` configures it (serve_command.uvicorn_config) and serving the
real tiny model:
- a client that disconnects gives up its work: a queued request leaves the queue, a running one
  stops at the next denoising step, each within a second;
- a request body trickling in is cut off at the body deadline (408, connection closed);
- request headers trickling in (slowloris), or none at all, close the connection at the header deadline.
Raw sockets, because an HTTP client library would not send a request this badly.
"""

from __future__ import annotations

import asyncio
import json
import select
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from sdxl_workloads.server.app import create_app
from sdxl_workloads.server.backends import GenerationParams, ModelLimits, ShouldStop
from sdxl_workloads.server.diffusers_backend import DiffusersBackend
from sdxl_workloads.server.model import ServedModel
from sdxl_workloads.server.serve_command import uvicorn_config
from sdxl_workloads.server.settings import ServerSettings

pytestmark = pytest.mark.compat

DEADLINE = 1.0  # header and body timeouts of the server under test
SLACK = 1.5  # scheduling on a shared 2-core machine


class RecordingBackend:
    """The real tiny-model backend, recording when each pipeline call starts and how it ends."""

    def __init__(self, inner: DiffusersBackend) -> None:
        self.inner = inner
        self.description = inner.description
        self.started = threading.Event()
        self.ended: list[tuple[float, str]] = []  # (monotonic time, "returned" or the exception's name)

    def load(self) -> ModelLimits:
        return self.inner.load()

    def generate(self, batch: Sequence[GenerationParams], should_stop: ShouldStop) -> list[list[Any]]:
        self.started.set()
        try:
            result = self.inner.generate(batch, should_stop)
        except BaseException as err:
            self.ended.append((time.monotonic(), type(err).__name__))
            raise
        self.ended.append((time.monotonic(), "returned"))
        return result


@dataclass
class Live:
    host: str
    port: int
    backend: RecordingBackend
    app: Any


@pytest.fixture(scope="module")
def live(tiny_model_path: Path) -> Iterator[Live]:
    import uvicorn

    backend = RecordingBackend(DiffusersBackend(str(tiny_model_path)))
    model = ServedModel(backend)
    model.load()
    settings = ServerSettings(max_batch=1, queue_size=4, request_timeout=120, max_steps=150, max_images=8,
                              header_timeout=DEADLINE, body_timeout=DEADLINE)
    app = create_app(model, settings)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = uvicorn_config(app, settings, "127.0.0.1", port, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=lambda: asyncio.run(server.serve()), daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline, "server did not start"
        time.sleep(0.05)
    yield Live("127.0.0.1", port, backend, app)
    server.should_exit = True
    thread.join(30)


def request_bytes(body: dict[str, Any]) -> bytes:
    data = json.dumps(body).encode()
    return (b"POST /v1/generate HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
            b"Content-Length: " + str(len(data)).encode() + b"\r\n\r\n" + data)


def read_until_closed(sock: socket.socket, timeout: float) -> tuple[bytes, float]:
    """Everything the server sends until it closes the connection, and when it closed it."""
    sock.settimeout(timeout)
    received = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except (ConnectionResetError, BrokenPipeError):
            break
        if not chunk:
            break
        received += chunk
    return received, time.monotonic()


def trickle(sock: socket.socket, data: bytes, every: float, limit: float) -> float:
    """Send `data` a byte at a time until the server answers or closes; returns when that happened."""
    start = time.monotonic()
    for byte in data:
        readable, _, _ = select.select([sock], [], [], every)
        if readable:
            return time.monotonic()
        try:
            sock.send(bytes([byte]))
        except (BrokenPipeError, ConnectionResetError):
            return time.monotonic()
        assert time.monotonic() - start < limit, "the server let a trickling client go on"
    readable, _, _ = select.select([sock], [], [], limit)
    assert readable, "the server neither answered nor closed"
    return time.monotonic()


def wait_for(predicate: Any, timeout: float) -> float:
    """Seconds until `predicate()` held; fails after `timeout`."""
    start = time.monotonic()
    while not predicate():
        assert time.monotonic() - start < timeout, "condition not reached in time"
        time.sleep(0.01)
    return time.monotonic() - start


def test_a_slow_body_is_cut_off_with_408(live: Live) -> None:
    with socket.create_connection((live.host, live.port)) as sock:
        sent = time.monotonic()
        whole = request_bytes({"prompt": "a photo " * 20})
        head, body = whole.split(b"\r\n\r\n", 1)
        sock.sendall(head + b"\r\n\r\n")
        answered = trickle(sock, body, every=0.2, limit=DEADLINE + SLACK + 5)
        response, closed = read_until_closed(sock, timeout=DEADLINE + SLACK)
    assert response.startswith(b"HTTP/1.1 408"), response[:200]
    assert b"did not arrive within 1 s" in response
    assert answered - sent < DEADLINE + SLACK and closed - sent < DEADLINE + SLACK + 1


@pytest.mark.parametrize("sends", [
    b"POST /v1/generate HTTP/1.1\r\nHost: test\r\n" + b"X-Padding: slowloris\r\n" * 20,  # never-ending headers
    b"",  # a connection that says nothing
], ids=["trickling-headers", "silent"])
def test_slow_or_missing_headers_close_the_connection(live: Live, sends: bytes) -> None:
    with socket.create_connection((live.host, live.port)) as sock:
        opened = time.monotonic()
        if sends:
            trickle(sock, sends, every=0.05, limit=DEADLINE + SLACK + 5)
        response, closed = read_until_closed(sock, timeout=DEADLINE + SLACK + 5)
    assert response == b"", "no request, no response: the connection is just closed"
    assert closed - opened < DEADLINE + SLACK


def test_a_kept_alive_connection_gets_a_new_header_deadline(live: Live) -> None:
    """After a complete exchange, the next request on the same connection is held to the deadline too."""
    with socket.create_connection((live.host, live.port)) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: test\r\n\r\n")
        sock.settimeout(5)
        first = b""
        while not first.endswith(b'{"status":"ok"}'):
            chunk = sock.recv(4096)
            assert chunk, f"closed early: {first!r}"
            first += chunk
        assert first.startswith(b"HTTP/1.1 200")
        started = time.monotonic()
        trickle(sock, b"GET /healthz HTTP/1.1\r\n" + b"X-Padding: slowloris\r\n" * 50, every=0.05,
                limit=DEADLINE + SLACK + 5)
        response, closed = read_until_closed(sock, timeout=DEADLINE + SLACK + 5)
    assert response == b""
    assert closed - started < DEADLINE + SLACK


def test_disconnected_clients_work_is_cancelled_within_a_second(live: Live) -> None:
    """A runs (many steps, several images: seconds of work), B waits behind it. B hangs up: it leaves
    the queue. A hangs up: its generation stops at the next step instead of running to the end."""
    batcher = live.app.state.batcher
    heavy = {"prompt": "a photo", "num_inference_steps": 150, "num_images": 4, "width": 128, "height": 128}
    live.backend.started.clear()
    ended_before = len(live.backend.ended)
    a = socket.create_connection((live.host, live.port))
    b = socket.create_connection((live.host, live.port))
    try:
        a.sendall(request_bytes(heavy))
        assert live.backend.started.wait(30), "A's generation did not start"
        b.sendall(request_bytes(heavy))
        wait_for(lambda: batcher.queue_depth == 1, timeout=5)

        b.close()
        assert wait_for(lambda: batcher.queue_depth == 0, timeout=1.0) < 1.0
        assert len(live.backend.ended) == ended_before, "A is still generating: only B's work was withdrawn"

        a.close()
        hung_up = time.monotonic()
        wait_for(lambda: len(live.backend.ended) > ended_before, timeout=5)
    finally:
        a.close()
        b.close()
    when, how = live.backend.ended[-1]
    assert how == "GenerationCancelled", "A's generation ran to its end although its client had gone"
    assert when - hung_up < 1.0
    wait_for(lambda: batcher.in_flight == 0, timeout=1.0)
    # The worker is free again: a new request is served.
    with socket.create_connection((live.host, live.port)) as c:
        c.sendall(request_bytes({"prompt": "a photo", "num_inference_steps": 1}))
        c.settimeout(30)
        assert c.recv(64).startswith(b"HTTP/1.1 200")
