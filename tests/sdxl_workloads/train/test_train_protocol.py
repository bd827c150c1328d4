"""What the operator reads: progress lines on stdout and one result in the termination log."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory, kit: Any) -> Any:
    spec = kit.spec_with({"training": {"maxSteps": 6, "checkpointEvery": 3},
                          "validation": {"every": 3, "prompts": ["a photo of sks person", "sks person, painting"]}})
    result = kit.run_train(tmp_path_factory.mktemp("protocol"), spec)
    assert result.exit_code == 0, result.stdout_lines[-5:]
    return result


def test_every_stdout_line_is_one_json_event(run: Any) -> None:
    assert run.stdout_lines
    for line in run.stdout_lines:
        assert isinstance(json.loads(line), dict) and "event" in json.loads(line)


def test_progress_lines_follow_the_protocol(run: Any) -> None:
    progress = run.of("progress")
    assert progress
    for event in progress:
        assert set(event) == {"event", "step", "totalSteps", "loss", "etaSeconds"}
        assert event["totalSteps"] == 6
        assert isinstance(event["loss"], float) and event["loss"] > 0
        assert isinstance(event["etaSeconds"], int) and event["etaSeconds"] >= 0
    steps = [e["step"] for e in progress]
    assert steps == sorted(set(steps)) and steps[0] == 1 and steps[-1] == 6
    assert progress[-1]["etaSeconds"] == 0


def test_checkpoint_and_validation_events(run: Any) -> None:
    assert [e["step"] for e in run.of("checkpoint")] == [3]  # the end is the LoRA, not a checkpoint
    assert run.of("checkpoint")[0]["uri"] == str(run.output / "checkpoints" / "step-3")
    assert [e["step"] for e in run.of("validation")] == [3, 6]
    from PIL import Image

    grid = Image.open(run.output / "validation" / "step-000006.png")
    assert grid.size == (128, 64)  # two prompts side by side at 64 px


def test_the_termination_message_is_the_success_result(run: Any) -> None:
    result = run.result
    assert result is not None
    assert run.of("result")[-1] == {"event": "result", **result}
    assert result["status"] == "Succeeded"
    out = run.output
    assert result["artifacts"] == {
        "lora": str(out / "lora" / "pytorch_lora_weights.safetensors"),
        "kohyaLora": str(out / "lora" / "run-out_kohya.safetensors"),
        "validationImages": str(out / "validation"),
    }
    for uri in result["artifacts"].values():
        assert Path(uri).exists()
    metrics = result["metrics"]
    lora = Path(result["artifacts"]["lora"]).read_bytes()
    assert metrics["loraSha256"] == hashlib.sha256(lora).hexdigest()
    assert metrics["steps"] == 6 and metrics["seconds"] > 0 and metrics["stepsPerSecond"] > 0
    assert 0 < metrics["finalLoss"] < 10
    assert len(json.dumps(result, separators=(",", ":")).encode()) < 4096


def test_a_failure_is_reported_with_reason_and_message(tmp_path: Path, kit: Any) -> None:
    result = kit.run_train(tmp_path, kit.spec_with({"training": {"optimizer": "adamw8bit"}}))
    assert result.exit_code == 2
    assert result.result is not None
    assert set(result.result) == {"status", "reason", "message", "time"}
    assert result.result["status"] == "Failed" and result.result["reason"] == "InvalidInput"
    assert result.of("progress") == []


@pytest.mark.slow
def test_the_console_command_keeps_stdout_to_protocol_lines(tmp_path: Path, kit: Any) -> None:
    """As the pod runs it: a separate process, the result path from $SDXL_TERMINATION_LOG, and
    nothing but JSON events on stdout (library chatter must go to stderr)."""
    import os
    import subprocess
    import sys

    import yaml

    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(yaml.safe_dump({"apiVersion": "sdxl.io/v1alpha1", "kind": "SDXLFineTune",
                                         "metadata": {"name": "console"}, "spec": kit.spec_with()}))
    log = tmp_path / "termination-log"
    env = {**os.environ, "SDXL_TERMINATION_LOG": str(log), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "sdxl_workloads", "train", "--spec", str(spec_file),
                           "--output", str(tmp_path / "out")], env=env, capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    events = [json.loads(line) for line in done.stdout.splitlines()]
    assert {e["event"] for e in events} >= {"progress", "validation", "result"}
    result = json.loads(log.read_text())
    assert result["status"] == "Succeeded"
    assert result["artifacts"]["kohyaLora"].endswith("lora/console_kohya.safetensors")
