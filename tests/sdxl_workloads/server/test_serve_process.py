"""`sdxl-workload serve` as a real process on a loopback port: readiness, SIGTERM drain, and a
model that fails to load."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.compat


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# What a by-hand run serves: a fine-tune's spec, the model given as --model (as the operator does).
SPEC = {"fineTune": "alice-v1", "accelerator": "cpu"}


def write_spec(tmp_path: Path, **fields: object) -> Path:
    path = tmp_path / "spec.json"
    path.write_text(json.dumps({**SPEC, **fields}))
    return path


def start_server(*extra: str, tmp_path: Path, spec: Path | None = None) -> tuple[subprocess.Popen[bytes], str, Path]:
    port = free_port()
    log = tmp_path / "server.log"
    spec = spec or write_spec(tmp_path)
    process = subprocess.Popen(
        [sys.executable, "-m", "sdxl_workloads", "serve", "--spec", str(spec), "--host", "127.0.0.1",
         "--port", str(port), *extra],
        stdout=log.open("wb"), stderr=subprocess.STDOUT,
        # One torch thread: the test machine's cores are shared, and a preempted second thread
        # stalls every step (see server/cpu_threads.py).
        env={**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"})
    return process, f"http://127.0.0.1:{port}", log


def wait_until_ready(process: subprocess.Popen[bytes], url: str, log: Path, timeout: float = 90) -> list[int]:
    """Poll /healthz and /readyz; returns every /readyz status seen."""
    seen: list[int] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, f"server exited early:\n{log.read_text()}"
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                seen.append(httpx.get(f"{url}/readyz", timeout=2).status_code)
                if seen[-1] == 200:
                    return seen
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    raise AssertionError(f"server not ready in {timeout} s:\n{log.read_text()}")


@pytest.mark.slow
def test_sigterm_lets_the_request_in_progress_finish_then_exits_0(tmp_path: Path) -> None:
    process, url, log = start_server("--model", "builtin:tiny", tmp_path=tmp_path)
    try:
        seen = wait_until_ready(process, url, log)
        assert seen[-1] == 200
        result: dict[str, object] = {}

        def slow_request() -> None:
            response = httpx.post(f"{url}/v1/generate", timeout=120, json={
                "prompt": "a photo of sks person", "num_inference_steps": 20, "width": 96, "height": 96,
                "seed": 3})
            result["status"] = response.status_code
            result["body"] = response.json()
            result["finished"] = time.monotonic()

        client = threading.Thread(target=slow_request)
        client.start()
        # Send SIGTERM once the request is inside the model.
        deadline = time.monotonic() + 30
        while "sdxl_requests_in_flight 1.0" not in httpx.get(f"{url}/metrics", timeout=5).text:
            assert time.monotonic() < deadline, "the request never started"
            time.sleep(0.02)
        process.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        time.sleep(0.3)
        # New connections are refused while the request in progress completes.
        with pytest.raises(httpx.TransportError):
            httpx.get(f"{url}/healthz", timeout=2)
        client.join(120)
        assert result.get("status") == 200, (result, log.read_text())
        assert result["finished"] > signalled  # it really was in progress when SIGTERM came
        assert len(result["body"]["images"]) == 1  # type: ignore[index]
        assert process.wait(60) == 0, log.read_text()
        assert "Application shutdown complete" in log.read_text()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


@pytest.mark.slow
def test_a_model_that_cannot_load_stops_the_server_with_a_failure_result(tmp_path: Path) -> None:
    termination = tmp_path / "termination-log"
    process, _url, log = start_server("--model", str(tmp_path / "no-such-model"),
                                      "--termination-log", str(termination), tmp_path=tmp_path)
    try:
        assert process.wait(60) == 2, log.read_text()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    result = json.loads(termination.read_text())
    assert result["status"] == "Failed" and result["reason"] == "InvalidInput"
    assert "no-such-model" in result["message"]


@pytest.mark.parametrize(("fields", "flags", "named"), [
    ({"server": {"maxBatch": 0}}, ["--model", "builtin:tiny"], "spec.server.maxBatch"),
    ({"server": {"queueSize": 0}}, ["--model", "builtin:tiny"], "spec.server.queueSize"),
    ({"loraScale": 3}, ["--model", "builtin:tiny"], "spec.loraScale"),
    ({"accelerator": "neuron"}, [], "pass --model"),
    ({"auth": {"apiKeySecret": "keys"}}, ["--model", "builtin:tiny"], "--api-key-file"),
    ({}, [], "spec.baseModel"),
])
def test_a_bad_spec_fails_before_serving_with_the_field_named(tmp_path: Path, fields: dict[str, object],
                                                              flags: list[str], named: str) -> None:
    termination = tmp_path / "termination-log"
    completed = subprocess.run(
        [sys.executable, "-m", "sdxl_workloads", "serve", "--spec", str(write_spec(tmp_path, **fields)),
         "--port", str(free_port()), "--termination-log", str(termination), *flags], capture_output=True, timeout=60)
    assert completed.returncode == 2, completed.stderr.decode()
    result = json.loads(termination.read_text())
    assert result["reason"] == "InvalidInput" and named in result["message"], result


@pytest.mark.slow
def test_api_key_file_is_read_at_start(tmp_path: Path) -> None:
    key_file = tmp_path / "key"
    key_file.write_text("k3y\n")
    process, url, log = start_server("--model", "builtin:tiny", "--api-key-file", str(key_file), tmp_path=tmp_path)
    try:
        wait_until_ready(process, url, log)
        body = {"prompt": "a photo", "num_inference_steps": 1}
        assert httpx.post(f"{url}/v1/generate", json=body, timeout=60).status_code == 401
        assert httpx.post(f"{url}/v1/generate", json=body, headers={"X-API-Key": "k3y"},
                          timeout=60).status_code == 200
        process.send_signal(signal.SIGTERM)
        assert process.wait(60) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
