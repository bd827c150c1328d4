"""A request to an API server that accepts the connection and never answers ends with the
"cannot reach" error the refreshes retry, instead of holding an API thread (and the status lock of
the resource being refreshed) forever. The server here is a plain socket that never writes."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest

from sdxl_operator.handlers import kube_api
from sdxl_operator.handlers.kube_api import KubeApi, KubeApiError

pytestmark = pytest.mark.asyncio


@pytest.fixture
def silent_server() -> Iterator[str]:
    """http://127.0.0.1:PORT of a server that accepts connections and reads, but never answers."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(listener.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    stop.set()
    thread.join()
    for connection in accepted:
        connection.close()
    listener.close()


async def test_a_request_that_gets_no_answer_times_out_as_unreachable(silent_server: str,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kube_api, "REQUEST_TIMEOUT", (2.0, 0.5))
    api = KubeApi.for_server(silent_server)
    try:
        started = time.monotonic()
        with pytest.raises(KubeApiError, match="cannot reach the Kubernetes API server"):
            await api.read("Job", "default", "train-x")
        assert time.monotonic() - started < 10
    finally:
        await api.close()

