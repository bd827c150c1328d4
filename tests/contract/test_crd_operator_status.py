"""Every SDXLFineTune and SDXLDeployment status the operator computes fits the CRDs' strict status schemas.

The apiserver rejects a status write with a value outside an enum or pattern (and prunes undeclared
fields), and KMock's emulator checks neither, so the operator's pure status functions are run here
through the main outcomes and each result is validated against the CRD. The log lines and termination
messages are what `sdxl-workload train` / `compile` printed for the tiny examples.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from sdxl_operator.core.labels import ARTIFACT_ANNOTATION, COMPILE_KEY
from sdxl_operator.spec.model_source import model_source
from sdxl_operator.status import deployment_status, finetune_status
from sdxl_operator.status.compile_outcome import compile_outcome
from sdxl_operator.status.workload_output import last_progress

REPO_ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = REPO_ROOT / "crds" / "examples" / "finetune-tiny.yaml"
DEPLOYMENT_EXAMPLE = REPO_ROOT / "crds" / "examples" / "deployment-cpu.yaml"
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

# The quality reports the trainer writes (sdxl_contract.quality_keys): builtin:world's, and one of a
# real base model with every metric computed or skipped (the skip reasons at their longest).
WORLD_QUALITY = {"images": 40, "identity": 1.0, "promptFidelity": 0.938, "classDrift": -0.125}
SIMILARITY_QUALITY = {"images": 8, "clipImage": 0.712, "clipText": 0.301, "faceDetected": 0,
                      "skipped": {"dino": "DINO model /models/dino folder does not exist (not mounted?) " + "x" * 100,
                                  "face": "no face detected in the validation images"}}


def _with_quality(quality: dict[str, Any]) -> dict[str, Any]:
    return {**SUCCEEDED_RESULT, "metrics": {**SUCCEEDED_RESULT["metrics"], "quality": quality}}


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
    "succeeded with the world's quality report": {"job": _job("Complete"), "pods": [_pod("Succeeded", containers=[
        _terminated("Completed", 0, json.dumps(_with_quality(WORLD_QUALITY)))])]},
    "succeeded with a similarity quality report": {"job": _job("Complete"), "pods": [_pod("Succeeded", containers=[
        _terminated("Completed", 0, json.dumps(_with_quality(SIMILARITY_QUALITY)))])]},
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
    assert [s["quality"] for s in statuses if "quality" in s] == [WORLD_QUALITY, SIMILARITY_QUALITY]


# --- SDXLDeployment ---------------------------------------------------------------------------------

KEY = "7c99ca84e9105761c7eddbd71b936434f8760853766e8802e5150d1ff0cb52b7"
COMPILED = f"pvc://sdxl-artifacts/store/compiled/{KEY}"
COMPILE_JOB = f"tiny-subject-cpu-compile-{KEY[:8]}"
URL = "http://tiny-subject-cpu.default.svc:8080"
COMPILE_RESULT = {"status": "Succeeded", "artifacts": {"compiled": COMPILED},
                  "metrics": {"key": KEY, "cacheHit": False, "seconds": 13.57}}


def _finetune(phase: str, **status: Any) -> dict[str, Any]:
    obj = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
    obj["status"] = {"phase": phase, **status}
    return obj


def _compile(condition: str | None, pods: list[dict[str, Any]]) -> Any:
    job = _job(condition, *(("BackoffLimitExceeded", "Job has reached the specified backoff limit")
                            if condition == "Failed" else ()))
    return deployment_status.CompileView(KEY, COMPILE_JOB, compile_outcome(
        job, pods, now=NOW, pending_grace_seconds=120))


def _inference(ready: int, replicas: int = 1) -> dict[str, Any]:
    return {
        "metadata": {"name": "tiny-subject-cpu", "generation": 1},
        "spec": {"replicas": replicas, "template": {"metadata": {"annotations": {
            COMPILE_KEY: KEY, ARTIFACT_ANNOTATION: COMPILED}}}},
        "status": {"observedGeneration": 1, "replicas": replicas, "updatedReplicas": replicas,
                   "readyReplicas": ready, "availableReplicas": ready},
    }


def _server_pod(container: dict[str, Any]) -> dict[str, Any]:
    pod = _pod("Running", containers=[container])
    pod["metadata"]["annotations"] = {COMPILE_KEY: KEY}
    return pod


SUCCEEDED_FINETUNE = _finetune("Succeeded", artifacts={
    "lora": SUCCEEDED_RESULT["artifacts"]["lora"], "loraSha256": SUCCEEDED_RESULT["metrics"]["loraSha256"]})
DEPLOYMENT_SCENARIOS: dict[str, dict[str, Any]] = {
    "fine-tune missing": {"finetune": None},
    "fine-tune training": {"finetune": _finetune("Training", progress={"step": 120, "totalSteps": 200})},
    "fine-tune failed": {"finetune": _finetune("Failed", failure={"reason": "OutOfMemory", "message": "OOMKilled"})},
    "compiling": {"finetune": SUCCEEDED_FINETUNE, "compile": ("Running", [_pod("Running", containers=[{
        "name": "compiler", "ready": True, "restartCount": 0, "state": {"running": {}}}])])},
    "compile pod unschedulable": {"finetune": SUCCEEDED_FINETUNE, "compile": ("Running", [_pod("Pending", conditions=[{
        "type": "PodScheduled", "status": "False", "reason": "Unschedulable",
        "message": "0/3 nodes are available: 3 Insufficient memory."}])])},
    "compile out of memory": {"finetune": SUCCEEDED_FINETUNE, "compile": ("Failed", [
        _pod("Failed", containers=[_terminated("OOMKilled", 137)])])},
    "server crash-looping": {"finetune": SUCCEEDED_FINETUNE, "deployment": _inference(ready=0),
                             "compile": ("Complete", [_pod("Succeeded", containers=[
                                 _terminated("Completed", 0, json.dumps(COMPILE_RESULT))])]),
                             "server_pods": [_server_pod({
                                 "name": "server", "ready": False, "restartCount": 6,
                                 "state": {"waiting": {"reason": "CrashLoopBackOff",
                                                       "message": "back-off 5m0s restarting failed container"}},
                                 "lastState": {"terminated": {"reason": "Error", "exitCode": 1}}})]},
    "ready": {"finetune": SUCCEEDED_FINETUNE, "deployment": _inference(ready=1),
              "compile": ("Complete", [_pod("Succeeded", containers=[
                  _terminated("Completed", 0, json.dumps(COMPILE_RESULT))])])},
    "scaled to zero": {"finetune": SUCCEEDED_FINETUNE, "deployment": _inference(ready=0, replicas=0),
                       "compile": ("Complete", [_pod("Succeeded", containers=[
                           _terminated("Completed", 0, json.dumps(COMPILE_RESULT))])])},
}


def _deployment_status(scenario: dict[str, Any], previous: dict[str, Any] | None = None) -> dict[str, Any]:
    spec = yaml.safe_load(DEPLOYMENT_EXAMPLE.read_text(encoding="utf-8"))["spec"]
    source = model_source(spec, scenario["finetune"])
    view = _compile(*scenario["compile"]) if "compile" in scenario else None
    return deployment_status.compute_deployment_status(deployment_status.DeploymentObservation(
        generation=1, now=NOW, previous=previous or {}, source=source, compile=view,
        deployment=scenario.get("deployment"), server_pods=scenario.get("server_pods", []), url=URL,
        pending_grace_seconds=120,
    ))


@pytest.fixture
def deployment_with_status(crd_validator: Callable[..., list[str]], deployment_crd_path: Path
                           ) -> Callable[[dict[str, Any]], list[str]]:
    def validate(status: dict[str, Any]) -> list[str]:
        obj = yaml.safe_load(DEPLOYMENT_EXAMPLE.read_text(encoding="utf-8"))
        obj["status"] = status
        return crd_validator(obj, deployment_crd_path)

    return validate


@pytest.mark.parametrize("scenario", sorted(DEPLOYMENT_SCENARIOS))
def test_computed_deployment_status_fits_the_crd(
    deployment_with_status: Callable[[dict[str, Any]], list[str]], scenario: str
) -> None:
    status = _deployment_status(DEPLOYMENT_SCENARIOS[scenario])
    assert deployment_with_status(status) == []
    # The next reconcile starts from this status: it must fit as well.
    assert deployment_with_status(_deployment_status(DEPLOYMENT_SCENARIOS[scenario], previous=status)) == []


def test_deployment_invalid_spec_status_fits_the_crd(
    deployment_with_status: Callable[[dict[str, Any]], list[str]]
) -> None:
    status = deployment_status.invalid_spec_status(["spec.neuron.height: must be a multiple of 8"] * 300,
                                                   now=NOW, generation=2)
    assert status["failure"]["reason"] == "InvalidSpec"
    assert deployment_with_status(status) == []


def test_deployment_scenarios_reach_every_phase_and_failure_reason() -> None:
    """Guards the table above: it must exercise what the schema constrains most."""
    statuses = [_deployment_status(s) for s in DEPLOYMENT_SCENARIOS.values()]
    assert {s["phase"] for s in statuses} == {"Pending", "Compiling", "Deploying", "Ready", "Failed"}
    reasons = {s["failure"]["reason"] for s in statuses if "failure" in s}
    assert {"FineTuneFailed", "Unschedulable", "OutOfMemory", "CrashLoopBackOff"} <= reasons
    ready = next(s for s in statuses if s["phase"] == "Ready")
    assert (ready["compileKey"], ready["liveArtifact"], ready["url"]) == (KEY, COMPILED, URL)
