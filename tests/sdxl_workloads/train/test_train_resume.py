"""Checkpoints and `--resume latest`: a preempted run continues where its last checkpoint left
off and ends with the same LoRA as a run that was never interrupted."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file

from sdxl_workloads.train import train_command

# Everything that carries state across steps: accumulation, a warmup + cosine schedule, offset
# noise, random flips (re-drawn per epoch), Min-SNR, batches that wrap around epochs.
RESUME_TRAINING = {"maxSteps": 12, "checkpointEvery": 4, "gradientAccumulation": 2, "batchSize": 2,
                   "lrScheduler": "cosine", "lrWarmupSteps": 3, "noiseOffset": 0.1, "learningRate": 1e-2}


def preempt_at(monkeypatch: pytest.MonkeyPatch, step: int) -> None:
    """Make the run stop abruptly after `step` (as a spot node's SIGTERM would), between checkpoints."""

    def hook(plan: Any) -> Any:
        def stop(run: Any) -> None:
            if run.step == step:
                raise KeyboardInterrupt

        return stop

    monkeypatch.setattr(train_command, "validation_hook", hook)


def lora_tensors(output: Path) -> dict[str, torch.Tensor]:
    return load_file(str(output / "lora" / "pytorch_lora_weights.safetensors"))


@pytest.mark.slow
def test_preempted_and_resumed_run_gives_the_uninterrupted_lora(tmp_path: Path, kit: Any,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    spec = kit.spec_with({"training": RESUME_TRAINING})
    straight = kit.run_train(tmp_path, spec, name="straight")
    assert straight.exit_code == 0

    with monkeypatch.context() as patch:
        preempt_at(patch, 10)
        stopped = kit.run_train(tmp_path, spec, name="resumed")
    assert stopped.exit_code == 130
    assert stopped.result is not None and stopped.result["status"] == "Failed"
    # Nothing but complete checkpoints at the destination: no LoRA, grid or args from a dead run.
    out = stopped.output
    assert sorted(p.name for p in out.iterdir()) == ["checkpoints"]
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step-4", "step-8"]
    assert all((out / "checkpoints" / s / "COMPLETE").is_file() for s in ("step-4", "step-8"))

    resumed = kit.run_train(tmp_path, spec, name="resumed", resume="latest")
    assert resumed.exit_code == 0
    assert any("resumed from step-8 at step 8" in e.get("message", "") for e in resumed.of("log"))
    assert resumed.of("progress")[0]["step"] == 9  # steps 9 and 10 are redone, 1-8 are not
    assert resumed.result is not None and resumed.result["metrics"]["steps"] == 12

    expected, actual = lora_tensors(straight.output), lora_tensors(resumed.output)
    assert expected.keys() == actual.keys()
    for key in expected:
        torch.testing.assert_close(actual[key], expected[key], atol=1e-6, rtol=1e-5)


def test_resume_latest_without_checkpoints_starts_from_step_zero(tmp_path: Path, kit: Any) -> None:
    result = kit.run_train(tmp_path, kit.spec_with({"training": {"maxSteps": 2}}), resume="latest")
    assert result.exit_code == 0
    assert any("starting at step 0" in e.get("message", "") for e in result.of("log"))
    assert result.of("progress")[0]["step"] == 1


def test_resuming_with_a_different_spec_is_refused(tmp_path: Path, kit: Any,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    spec = kit.spec_with({"training": {"maxSteps": 4, "checkpointEvery": 2}})
    with monkeypatch.context() as patch:
        preempt_at(patch, 3)
        assert kit.run_train(tmp_path, spec).exit_code == 130
    changed = kit.spec_with({"training": {"maxSteps": 4, "checkpointEvery": 2, "rank": 8}})
    result = kit.run_train(tmp_path, changed, resume="latest")
    assert result.exit_code == 2
    assert result.result is not None and result.result["reason"] == "InvalidInput"
    assert "training.rank" in result.result["message"]
    # A longer run (maxSteps) is a legitimate change: resuming continues to the new end.
    longer = kit.spec_with({"training": {"maxSteps": 5, "checkpointEvery": 2}})
    result = kit.run_train(tmp_path, longer, resume="latest")
    assert result.exit_code == 0 and result.result is not None
    assert result.of("progress")[0]["step"] == 3 and result.result["metrics"]["steps"] == 5


def test_resume_from_an_explicit_checkpoint_path(tmp_path: Path, kit: Any) -> None:
    spec = kit.spec_with({"training": {"maxSteps": 4, "checkpointEvery": 2}})
    first = kit.run_train(tmp_path, spec, name="first")
    checkpoint = first.output / "checkpoints" / "step-2"
    result = kit.run_train(tmp_path, spec, name="second", resume=str(checkpoint))
    assert result.exit_code == 0
    assert result.of("progress")[0]["step"] == 3
    bad = kit.run_train(tmp_path, spec, name="third", resume=str(first.output / "lora"))
    assert bad.exit_code == 2 and bad.result is not None
    assert "not a complete training checkpoint" in bad.result["message"]


def test_a_fresh_run_over_old_checkpoints_warns_and_replaces_them(tmp_path: Path, kit: Any) -> None:
    import json

    output = tmp_path / "out"
    first = kit.run_train(tmp_path, kit.spec_with({"training": {"maxSteps": 3, "checkpointEvery": 2}}),
                          output=output, name="first")
    assert first.exit_code == 0
    again = kit.run_train(tmp_path, kit.spec_with({"training": {"maxSteps": 3, "checkpointEvery": 2, "seed": 9}}),
                          output=output, name="again")
    assert again.exit_code == 0
    assert any("holds checkpoints of an earlier run" in e["message"] for e in again.of("log"))
    spec = json.loads((output / "checkpoints" / "step-2" / "spec.json").read_text())
    assert spec["training"]["seed"] == 9
