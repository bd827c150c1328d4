"""The pure status function: every phase and failure reason from recorded-shape Job and Pod objects."""

from __future__ import annotations

import datetime
import json
from typing import Any

import pytest

from sdxl_operator.status.finetune_status import (
    compute_finetune_status,
    initial_status,
    invalid_spec_status,
)
from sdxl_operator.status.status_patch import status_patch
from sdxl_operator.status.workload_output import last_progress, parse_progress_line, parse_result

NOW = datetime.datetime(2026, 11, 26, 12, 0, 0, tzinfo=datetime.timezone.utc)
T = "2026-11-26T11:59:00Z"
SHA = "0123456789abcdef" * 4


def job(*conditions: tuple[str, str, str], **status: Any) -> dict[str, Any]:
    return {"metadata": {"name": "ft-train"}, "spec": {"backoffLimit": 2, "activeDeadlineSeconds": 3600},
            "status": {**status, "conditions": [
                {"type": t, "status": "True", "reason": r, "message": m, "lastTransitionTime": T}
                for t, r, m in conditions]}}


def pod(phase: str = "Running", *, scheduled: dict[str, Any] | None = None, state: dict[str, Any] | None = None,
        created: str = T, name: str = "ft-train-abc") -> dict[str, Any]:
    containers = [{"name": "trainer", "image": "reg/train:1", "state": state}] if state else []
    conditions = [scheduled] if scheduled else [{"type": "PodScheduled", "status": "True"}]
    return {"metadata": {"name": name, "creationTimestamp": created},
            "status": {"phase": phase, "conditions": conditions, "containerStatuses": containers}}


def terminated(exit_code: int, message: str = "", reason: str = "Error") -> dict[str, Any]:
    return {"terminated": {"exitCode": exit_code, "reason": reason, "message": message}}


def compute(job_: dict[str, Any] | None, pods: list[dict[str, Any]], progress: dict[str, Any] | None = None,
            previous: dict[str, Any] | None = None, now: datetime.datetime = NOW) -> dict[str, Any]:
    previous = previous if previous is not None else initial_status(job_name="ft-train", now=NOW, generation=1)
    return compute_finetune_status(job_name="ft-train", job=job_, pods=pods, progress=progress, now=now,
                                   previous=previous, generation=1, pending_grace_seconds=120)


def condition(status: dict[str, Any], type_: str) -> tuple[str, str]:
    found = next(c for c in status["conditions"] if c["type"] == type_)
    return found["status"], found["reason"]


FAILED_RESULT = json.dumps({"status": "Failed", "reason": "InvalidInput", "message": "no images in s3://b/p"})


@pytest.mark.parametrize(
    ("job_", "pods", "reason", "message_part", "exit_code"),
    [
        (job(("Failed", "PodFailurePolicy", "exit code 2")), [pod("Failed", state=terminated(2, FAILED_RESULT))],
         "InvalidInput", "no images in s3://b/p", 2),
        (job(("Failed", "BackoffLimitExceeded", "")), [pod("Failed", state=terminated(137, "", "OOMKilled"))],
         "OutOfMemory", "OOMKilled", 137),
        (job(("Failed", "BackoffLimitExceeded", "")),
         [pod("Failed", state=terminated(1, json.dumps({"status": "Failed", "reason": "OutOfMemory",
                                                        "message": "CUDA out of memory"})))],
         "OutOfMemory", "CUDA out of memory", 1),
        (job(("Failed", "DeadlineExceeded", "Job was active longer than specified deadline")),
         [pod("Running", state={"running": {}})], "DeadlineExceeded", "deadline of 3600s", None),
        (job(("Failed", "BackoffLimitExceeded", "")),
         [pod("Failed", state=terminated(1, "Traceback...\nValueError: x"), created="2026-11-26T11:50:00Z", name="a"),
          pod("Failed", state=terminated(3, "Segmentation fault"), created="2026-11-26T11:55:00Z", name="b")],
         "BackoffLimitExceeded", "failed 3 times (exit code 3); the Job gave up. Last error: Segmentation fault", 3),
        (job(("Failed", "BackoffLimitExceeded", "")),
         [pod("Failed", state=terminated(1, json.dumps({"status": "Failed", "reason": "InternalError",
                                                        "message": "KeyError: 'x'"})))],
         "BackoffLimitExceeded", "Last error: KeyError: 'x'", 1),
        (job(("Failed", "PodFailurePolicy", "")),
         [pod("Failed", state=terminated(2, json.dumps({"status": "Failed", "reason": "StorageError",
                                                        "message": "bucket is read-only"})))],
         "StorageError", "bucket is read-only", 2),
        (job(("FailureTarget", "SomethingNew", "new controller reason")), [], "InternalError",
         "SomethingNew: new controller reason", None),
    ],
)
def test_failed_job_reasons(job_: dict[str, Any], pods: list[dict[str, Any]], reason: str, message_part: str,
                            exit_code: int | None) -> None:
    status = compute(job_, pods)
    assert status["phase"] == "Failed"
    assert status["failure"]["reason"] == reason
    assert message_part in status["failure"]["message"]
    assert status["failure"].get("exitCode") == exit_code
    assert status["failure"]["time"] == T and status["completionTime"] == T
    assert condition(status, "Ready") == ("False", reason)
    assert condition(status, "Training") == ("False", reason)


def test_success_takes_artifacts_digest_and_final_step_from_the_termination_message() -> None:
    result = {"status": "Succeeded", "artifacts": {"lora": "s3://o/lora", "kohyaLora": "s3://o/kohya",
                                                   "validationImages": "s3://o/val", "junk": 5},
              "metrics": {"loraSha256": SHA, "finalLoss": 0.08, "steps": 500, "seconds": 3600}}
    status = compute(job(("Complete", "", ""), startTime=T, completionTime="2026-11-26T12:00:00Z"),
                     [pod("Succeeded", state=terminated(0, json.dumps(result), "Completed"))],
                     previous={**initial_status(job_name="ft-train", now=NOW, generation=1),
                               "progress": {"step": 480, "totalSteps": 500, "loss": 0.1, "updatedAt": T}})
    assert status["phase"] == "Succeeded"
    assert status["artifacts"] == {"lora": "s3://o/lora", "kohyaLora": "s3://o/kohya", "validationImages": "s3://o/val",
                                   "loraSha256": SHA}
    assert status["progress"] == {"step": 500, "totalSteps": 500, "loss": 0.08, "etaSeconds": 0,
                                  "updatedAt": "2026-11-26T12:00:00Z"}
    assert status["startTime"] == T and status["completionTime"] == "2026-11-26T12:00:00Z"
    assert condition(status, "Ready") == ("True", "Succeeded") and "failure" not in status


def succeeded_with_quality(quality: Any) -> dict[str, Any]:
    result = {"status": "Succeeded", "artifacts": {"lora": "s3://o/lora"}, "metrics": {"steps": 10, "quality": quality}}
    return compute(job(("Complete", "", "")), [pod("Succeeded", state=terminated(0, json.dumps(result), "Completed"))])


def ready_message(status: dict[str, Any]) -> str:
    return str(next(c for c in status["conditions"] if c["type"] == "Ready")["message"])


def test_success_carries_the_world_quality_report_and_summarises_it() -> None:
    status = succeeded_with_quality({"images": 40, "identity": 1.0, "promptFidelity": 0.938, "classDrift": 0.125})
    assert status["quality"] == {"images": 40, "identity": 1.0, "promptFidelity": 0.938, "classDrift": 0.125}
    assert ready_message(status) == ("LoRA written to s3://o/lora; "
                                     "quality: identity 1.00, prompt fidelity 0.94, class drift 0.12")


def test_success_carries_similarities_and_skip_reasons() -> None:
    report = {"images": 2, "clipText": 0.31, "faceDetected": 0,
              "skipped": {"clipImage": "no instance photos", "dino": "no DINO model configured"}}
    status = succeeded_with_quality(report)
    assert status["quality"] == report
    assert ready_message(status).endswith("quality: CLIP-T 0.31, 2 skipped")


@pytest.mark.parametrize(("report", "expected"), [
    # Unknown keys, out-of-range numbers, booleans and negative counts never reach the status.
    ({"identity": 1.5, "clipText": True, "images": -1, "extra": 1, "skipped": {"bogus": "x", "dino": 3}}, None),
    ({"identity": 0.5, "classDrift": -2, "images": 1.5}, {"identity": 0.5}),
    ({"skipped": {"face": "y" * 1000}}, {"skipped": {"face": "y" * 256}}),
    ("not a report", None),
])
def test_quality_keeps_only_what_the_schema_allows(report: Any, expected: dict[str, Any] | None) -> None:
    status = succeeded_with_quality(report)
    assert status.get("quality") == expected
    if expected is None:
        assert ready_message(status) == "LoRA written to s3://o/lora"


def test_success_without_a_readable_result_says_so() -> None:
    status = compute(job(("Complete", "", "")), [pod("Succeeded", state=terminated(0, "not json", "Completed"))])
    assert status["phase"] == "Succeeded" and "artifacts" not in status
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert "reported no artifacts" in ready["message"]


def test_running_pod_gives_training_with_progress() -> None:
    progress = {"step": 120, "totalSteps": 500, "loss": 0.113, "etaSeconds": 310.0}
    status = compute(job(active=1), [pod(state={"running": {}})], progress)
    assert status["phase"] == "Training"
    assert status["progress"] == {**progress, "updatedAt": "2026-11-26T12:00:00Z"}
    assert condition(status, "Training") == ("True", "Running")
    assert condition(status, "Scheduled") == ("True", "PodScheduled")
    later = compute(job(active=1), [pod(state={"running": {}})], dict(progress), previous=status,
                    now=NOW + datetime.timedelta(seconds=30))
    assert later["progress"]["updatedAt"] == "2026-11-26T12:00:00Z"  # unchanged progress keeps its time
    assert later == status


def test_transition_times_move_only_with_status() -> None:
    first = compute(job(active=1), [pod(state={"running": {}})])
    later = compute(job(active=1), [pod(state={"running": {}})], {"step": 5}, previous=first,
                    now=NOW + datetime.timedelta(minutes=5))
    times = {c["type"]: c["lastTransitionTime"] for c in later["conditions"]}
    assert times["Training"] == "2026-11-26T12:00:00Z"


@pytest.mark.parametrize(
    ("job_", "pods", "scheduled", "training"),
    [
        (None, [], ("Unknown", "WaitingForPod"), None),
        (job(active=1), [], ("Unknown", "WaitingForPod"), None),
        (job(active=1), [pod("Pending", state={"waiting": {"reason": "ContainerCreating"}})],
         ("True", "PodScheduled"), ("False", "ContainerCreating")),
    ],
)
def test_pending(job_: Any, pods: Any, scheduled: tuple[str, str], training: tuple[str, str] | None) -> None:
    status = compute(job_, pods)
    assert status["phase"] == "Pending" and "failure" not in status
    assert condition(status, "Scheduled") == scheduled
    if training:
        assert condition(status, "Training") == training


def _unschedulable(since: str) -> dict[str, Any]:
    return {"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
            "message": "0/4 nodes are available: 4 Insufficient nvidia.com/gpu.", "lastTransitionTime": since}


def test_unschedulable_within_the_grace_is_an_ordinary_wait() -> None:
    status = compute(job(active=1), [pod("Pending", scheduled=_unschedulable("2026-11-26T11:59:30Z"))])
    assert status["phase"] == "Pending" and "failure" not in status
    assert condition(status, "Scheduled") == ("False", "WaitingForNode")


def test_unschedulable_past_the_grace_is_reported_but_stays_pending() -> None:
    status = compute(job(active=1), [pod("Pending", scheduled=_unschedulable("2026-11-26T11:55:00Z"))])
    assert status["phase"] == "Pending"
    assert status["failure"]["reason"] == "Unschedulable"
    assert "Insufficient nvidia.com/gpu" in status["failure"]["message"] and "after 300s" in status["failure"]["message"]
    assert condition(status, "Scheduled") == ("False", "Unschedulable")
    assert condition(status, "Ready") == ("False", "Unschedulable")
    # Once a node appears the failure goes away, and the patch removes it.
    running = compute(job(active=1), [pod(state={"running": {}})], previous=status)
    assert "failure" not in running and status_patch(status, running)["failure"] is None


@pytest.mark.parametrize("waiting_reason", ["ErrImagePull", "ImagePullBackOff", "InvalidImageName"])
def test_image_pull_problems(waiting_reason: str) -> None:
    state = {"waiting": {"reason": waiting_reason, "message": "pull access denied for reg/train"}}
    status = compute(job(active=1), [pod("Pending", state=state)])
    assert status["phase"] == "Pending"
    assert status["failure"]["reason"] == "ImagePullFailed"
    assert "reg/train:1" in status["failure"]["message"] and "pull access denied" in status["failure"]["message"]
    assert condition(status, "Ready") == ("False", "ImagePullFailed")


def test_failed_attempt_before_the_job_gives_up_is_a_retry() -> None:
    previous = compute(job(active=1), [pod(state={"running": {}})])
    status = compute(job(active=0, failed=1), [pod("Failed", state=terminated(1))], previous=previous)
    assert status["phase"] == "Training"
    assert condition(status, "Training") == ("False", "Retrying")


def test_finished_runs_never_change() -> None:
    failed = compute(job(("Failed", "DeadlineExceeded", "")), [])
    assert compute(job(("Complete", "", "")), [], previous=failed) == failed


def test_invalid_spec_status() -> None:
    status = invalid_spec_status(["spec.training.rank: must be at least 1, got 0"], now=NOW, generation=3)
    assert status["phase"] == "Failed" and status["observedGeneration"] == 3
    assert status["failure"] == {"reason": "InvalidSpec", "message": "spec.training.rank: must be at least 1, got 0",
                                 "time": "2026-11-26T12:00:00Z"}
    assert condition(status, "Accepted") == ("False", "InvalidSpec")


def test_status_patch_nulls_what_disappeared_at_any_depth() -> None:
    assert status_patch({"a": 1, "b": {"c": 1, "d": 2}, "e": [1]}, {"b": {"c": 2}, "e": [2]}) == \
        {"a": None, "b": {"c": 2, "d": None}, "e": [2]}


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ('{"event": "progress", "step": 120, "totalSteps": 500, "loss": 0.113, "etaSeconds": 310}',
         {"step": 120, "totalSteps": 500, "loss": 0.113, "etaSeconds": 310.0}),
        ('{"event": "progress", "step": 3}', {"step": 3}),
        ('{"event": "progress", "step": 3, "loss": NaN}', {"step": 3}),
        ('{"event": "log", "message": "hi"}', None),
        ('{"event": "progress", "step": -1}', None),
        ("Traceback (most recent call last):", None),
        ("{not json", None),
    ],
)
def test_progress_lines(line: str, expected: dict[str, Any] | None) -> None:
    assert parse_progress_line(line) == expected


def test_last_progress_picks_the_last_progress_line() -> None:
    log = '{"event": "progress", "step": 1}\n{"event": "progress", "step": 2}\n{"event": "log", "message": "x"}\n'
    assert last_progress(log) == {"step": 2}
    assert last_progress("") is None and last_progress(None) is None


@pytest.mark.parametrize(
    ("message", "expected_status"),
    [('{"status": "Succeeded", "artifacts": {}}', "Succeeded"), ('{"status": "Weird"}', None), ("oops", None),
     ("", None), (None, None)],
)
def test_parse_result(message: str | None, expected_status: str | None) -> None:
    result = parse_result(message)
    assert (result or {}).get("status") == expected_status
