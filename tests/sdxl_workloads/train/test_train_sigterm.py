"""SIGTERM (a spot interruption, a node drain) during training: the trainer finishes its step,
writes a checkpoint within the pod's grace period and exits; the next pod resumes from it.

A real `sdxl-workload train` process gets a real signal: what is tested is the handler, the loop
and the checkpoint as a pod would run them.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

# Kubernetes' default terminationGracePeriodSeconds: SIGKILL follows SIGTERM after it.
GRACE_PERIOD_SECONDS = 30


@pytest.mark.slow
def test_sigterm_writes_a_checkpoint_in_the_grace_period_and_the_next_run_resumes_from_it(
        tmp_path: Path, kit: Any) -> None:
    # No periodic checkpoints: only the signal can make one. Steps enough to outlast the test.
    spec = kit.spec_with({"training": {"maxSteps": 5000, "checkpointEvery": 0}})
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(yaml.safe_dump(spec))
    out, log = tmp_path / "out", tmp_path / "termination-log"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "sdxl_workloads", "train", "--spec", str(spec_file), "--output", str(out),
         "--termination-log", str(log)],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    events: list[dict[str, Any]] = []
    try:
        assert process.stdout is not None
        for line in process.stdout:  # wait until training is under way
            if line.startswith("{"):
                events.append(json.loads(line))
                if events[-1]["event"] == "progress":
                    break
        assert events and events[-1]["event"] == "progress", "the trainer never reported a step"
        signalled = time.monotonic()
        process.send_signal(signal.SIGTERM)
        rest, _ = process.communicate(timeout=GRACE_PERIOD_SECONDS)
        stopped_after = time.monotonic() - signalled
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    events += [json.loads(line) for line in rest.splitlines() if line.startswith("{")]

    assert process.returncode == 143  # 128 + SIGTERM: retryable, the Job starts another pod
    assert stopped_after < GRACE_PERIOD_SECONDS
    checkpoint_events = [e for e in events if e["event"] == "checkpoint"]
    assert len(checkpoint_events) == 1
    step = checkpoint_events[0]["step"]
    assert 1 <= step < 5000
    assert (out / "checkpoints" / f"step-{step}" / "COMPLETE").is_file()
    result = json.loads(log.read_text())
    assert result["status"] == "Failed" and f"stopped by SIGTERM at step {step}" in result["message"]
    assert not (out / "lora").exists()  # a stopped run publishes no LoRA

    # The next pod: same spec (fewer steps may be asked for), --resume latest.
    resumed = kit.run_train(tmp_path, kit.spec_with({"training": {"maxSteps": step + 2, "checkpointEvery": 0}}),
                            output=out, resume="latest", name="resumed")
    assert resumed.exit_code == 0, resumed.stdout_lines[-5:]
    assert any(f"resumed from step-{step} at step {step}" in e.get("message", "") for e in resumed.of("log"))
    assert resumed.of("progress")[0]["step"] == step + 1
    assert resumed.result is not None and resumed.result["metrics"]["steps"] == step + 2


def test_sigterm_outside_the_block_is_left_to_its_previous_handler() -> None:
    from sdxl_workloads.train import graceful_stop

    before = signal.getsignal(signal.SIGTERM)
    with graceful_stop.stop_on_sigterm() as stop:
        os.kill(os.getpid(), signal.SIGTERM)
        deadline = time.monotonic() + 5
        while not stop.requested and time.monotonic() < deadline:
            time.sleep(0.01)
        assert stop.requested and stop.signal_name == "SIGTERM"
    assert signal.getsignal(signal.SIGTERM) == before
