"""Every SDXLFineTune status the operator computes fits the CRD's strict status schema.

The apiserver rejects a status write with a value outside an enum or pattern (and prunes undeclared
fields), and KMock's emulator checks neither, so the operator's pure status functions are run here
through the main outcomes and each result is validated against crds/sdxlfinetunes.sdxl.io.yaml.
The log lines and termination message are what `sdxl-workload train` printed for the tiny example.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from sdxl_operator import finetune_status
from sdxl_operator.workload_output import last_progress

REPO_ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = REPO_ROOT / "crds" / "examples" / "finetune-tiny.yaml"
NOW = datetime.datetime(2026, 11, 26, 12, 0, 0, tzinfo=datetime.timezone.utc)
JOB_NAME = "tiny-subject-train"

TRAINER_LOG = "\n".join([
    '{"event": "log", "message": "training tiny-subject: step 0 of 200, 10 instance images, 0 class images"}',
    '{"event": "progress", "step": 98, "totalSteps": 200, "loss": 1.071124, "etaSeconds": 101}',
    '{"event": "checkpoint", "step": 100, "uri": "/out/checkpoints/step-100"}',
    '{"event": "progress", "step": 120, "totalSteps": 200, "loss": 0.998, "etaSeconds": 80}',
])
SUCCEEDED_RESULT = {
    "status": "Succeeded",
    "artifacts": {"lora": "pvc://sdxl-artifacts/store/finetunes/default/tiny-subject/1a2b3c4d/lora/"
                          "pytorch_lora_weights.safetensors",
                  "kohyaLora": "pvc://sdxl-artifacts/store/finetunes/default/tiny-subject/1a2b3c4d/lora/"
                               "tiny-subject_kohya.safetensors",
                  "validationImages": "pvc://sdxl-artifacts/store/finetunes/default/tiny-subject/1a2b3c4d/validation"},
    "metrics": {"finalLoss": 0.918713, "steps": 200, "stepsPerSecond": 1.033,
                "loraSha256": "d97320424be7ffac2de421d8eaea6957627f1aa571e1d9bc1cb687c4a21ba1b4", "seconds": 213.2},
}


def _pod(phase: str, *, containers: list[dict[str, Any]] | None = None,
         conditions: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {
        "metadata": {"name": f"{JOB_NAME}-x7k2p", "creationTimestamp": "2026-11-26T11:50:00Z"},
        "status": {"phase": phase, "conditions": conditions or [], "containerStatuses": containers or []},
    }


def _job(condition: str | None = None, reason: str = "", message: str = "") -> dict[str, Any]:
    status: dict[str, Any] = {"startTime": "2026-11-26T11:50:00Z"}
    if condition:
        status["conditions"] = [{"type": condition, "status": "True", "reason": reason, "message": message,
                                 "lastTransitionTime": "2026-11-26T11:59:00Z"}]
    if condition == "Complete":
        status["completionTime"] = "2026-11-26T11:59:00Z"
    return {"metadata": {"name": JOB_NAME}, "spec": {"backoffLimit": 2, "activeDeadlineSeconds": 86400},
            "status": status}


def _terminated(reason: str, exit_code: int, message: str = "") -> dict[str, Any]:
    return {"name": "trainer", "ready": False, "restartCount": 0,
            "state": {"terminated": {"reason": reason, "exitCode": exit_code, "message": message}}}


SCENARIOS: dict[str, dict[str, Any]] = {
    "no job yet": {"job": None, "pods": []},
    "pod unschedulable": {"job": _job(), "pods": [_pod("Pending", conditions=[{
        "type": "PodScheduled", "status": "False", "reason": "Unschedulable",
        "message": "0/3 nodes are available: 3 Insufficient nvidia.com/gpu.",
        "lastTransitionTime": "2026-11-26T11:50:01Z"}])]},
    "image pull failing": {"job": _job(), "pods": [_pod("Pending", containers=[{
        "name": "trainer", "ready": False, "restartCount": 0,
        "state": {"waiting": {"reason": "ImagePullBackOff",
                              "message": 'Back-off pulling image "registry.example/sdxl-train:0.1.0"'}}}])]},
    "training": {"job": _job(), "pods": [_pod("Running", containers=[{
        "name": "trainer", "ready": True, "restartCount": 0,
        "state": {"running": {"startedAt": "2026-11-26T11:51:00Z"}}}])], "log": TRAINER_LOG},
    "succeeded": {"job": _job("Complete"), "pods": [_pod("Succeeded", containers=[
        _terminated("Completed", 0, json.dumps(SUCCEEDED_RESULT))])], "log": TRAINER_LOG},
    "out of memory": {"job": _job("Failed", "BackoffLimitExceeded", "Job has reached the specified backoff limit"),
                      "pods": [_pod("Failed", containers=[_terminated("OOMKilled", 137)])]},
    "invalid input reported by the trainer": {
        "job": _job("Failed", "BackoffLimitExceeded", "Job has reached the specified backoff limit"),
        "pods": [_pod("Failed", containers=[_terminated("Error", 2, json.dumps({
            "status": "Failed", "reason": "InvalidInput",
            "message": "spec.instanceImages: s3://my-sdxl-data/photos/alice/ holds no images"}))])]},
    "deadline exceeded": {"job": _job("Failed", "DeadlineExceeded", "Job was active longer than specified deadline"),
                          "pods": [_pod("Failed", containers=[_terminated("Error", 137)])]},
}


@pytest.fixture
def finetune_with_status(crd_validator: Callable[..., list[str]], finetune_crd_path: Path
                         ) -> Callable[[dict[str, Any]], list[str]]:
    def validate(status: dict[str, Any]) -> list[str]:
        obj = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
        obj["status"] = status
        return crd_validator(obj, finetune_crd_path)

    return validate


def test_initial_status_fits_the_crd(finetune_with_status: Callable[[dict[str, Any]], list[str]]) -> None:
    assert finetune_with_status(finetune_status.initial_status(job_name=JOB_NAME, now=NOW, generation=1)) == []


def test_invalid_spec_status_fits_the_crd(finetune_with_status: Callable[[dict[str, Any]], list[str]]) -> None:
    errors = ["spec.training.resolution: must be a multiple of 8, got 1020"] * 500  # a very long message
    status = finetune_status.invalid_spec_status(errors, now=NOW, generation=1)
    assert status["failure"]["reason"] == "InvalidSpec"
    assert finetune_with_status(status) == []


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_computed_status_fits_the_crd(
    finetune_with_status: Callable[[dict[str, Any]], list[str]], scenario: str
) -> None:
    inputs = SCENARIOS[scenario]
    previous = finetune_status.initial_status(job_name=JOB_NAME, now=NOW - datetime.timedelta(minutes=10),
                                              generation=1)
    status = finetune_status.compute_finetune_status(
        job_name=JOB_NAME, job=inputs["job"], pods=inputs["pods"], progress=last_progress(inputs.get("log")),
        now=NOW, previous=previous, generation=1, pending_grace_seconds=120,
    )
    assert finetune_with_status(status) == []


def test_scenarios_reach_every_phase_and_the_failure_fields() -> None:
    """Guards the table above: it must exercise what the schema constrains most."""
    statuses = [
        finetune_status.compute_finetune_status(
            job_name=JOB_NAME, job=s["job"], pods=s["pods"], progress=last_progress(s.get("log")), now=NOW,
            previous=None, generation=1, pending_grace_seconds=120)
        for s in SCENARIOS.values()
    ]
    assert {s["phase"] for s in statuses} == {"Pending", "Training", "Succeeded", "Failed"}
    reasons = {s["failure"]["reason"] for s in statuses if "failure" in s}
    assert {"Unschedulable", "ImagePullFailed", "OutOfMemory", "InvalidInput", "DeadlineExceeded"} <= reasons
    succeeded = next(s for s in statuses if s["phase"] == "Succeeded")
    assert succeeded["artifacts"]["loraSha256"] == SUCCEEDED_RESULT["metrics"]["loraSha256"]
    assert any("progress" in s for s in statuses)
