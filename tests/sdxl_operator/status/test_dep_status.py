"""The SDXLDeployment status function, outcome by outcome; every status it computes fits the CRD's schema."""

from __future__ import annotations

import datetime
import json
from pathlib import Path
from typing import Any

import pytest

from sdxl_contract.failure_reasons import FailureReason
from sdxl_contract.schema import validate_against_crd
from sdxl_operator.spec.deployment_validation import validate_deployment_spec
from sdxl_operator.spec.model_source import FineTuneWait, ModelSource, model_source
from sdxl_operator.status.compile_outcome import CompileDone, CompileFailed, CompileRunning, compile_outcome
from sdxl_operator.status.deployment_status import (
    CompileView,
    DeploymentObservation,
    compute_deployment_status,
    invalid_spec_status,
    is_settled,
    rollout_done,
)
from sdxl_operator.status.pod_problems import PodProblem

REPO = Path(__file__).resolve().parents[3]
NOW = datetime.datetime(2026, 11, 26, 12, 0, tzinfo=datetime.timezone.utc)
EARLIER = "2026-11-26T11:00:00Z"
KEY, OLD_KEY = "a" * 64, "b" * 64
ARTIFACT, OLD_ARTIFACT = f"s3://s/compiled/{KEY}", f"s3://s/compiled/{OLD_KEY}"
URL = "http://alice.team-a.svc:8080"
SOURCE = ModelSource(lora="s3://b/lora.safetensors", lora_sha256=None, base_model="builtin:tiny",
                     base_revision="main", finetune="ft")


def deployment(key: str, artifact: str, *, replicas: int = 2, updated: int = 2, ready: int = 2,
               generation: int = 3, observed: int = 3, total: int | None = None) -> dict[str, Any]:
    return {
        "metadata": {"name": "alice", "generation": generation},
        "spec": {"replicas": replicas, "template": {"metadata": {"annotations": {
            "sdxl.io/compile-key": key, "sdxl.io/compiled-artifact": artifact}}}},
        "status": {"observedGeneration": observed, "replicas": replicas if total is None else total,
                   "updatedReplicas": updated, "readyReplicas": ready, "availableReplicas": ready},
    }


def crashing_pod(key: str, *, oom: bool = False) -> dict[str, Any]:
    last = {"reason": "OOMKilled", "exitCode": 137} if oom else {
        "reason": "Error", "exitCode": 1,
        "message": json.dumps({"status": "Failed", "reason": "InternalError", "message": "cannot load model"})}
    return {"metadata": {"name": "alice-x", "annotations": {"sdxl.io/compile-key": key},
                         "creationTimestamp": EARLIER},
            "status": {"phase": "Running", "conditions": [{"type": "PodScheduled", "status": "True"}],
                       "containerStatuses": [{"name": "server", "restartCount": 4, "lastState": {"terminated": last},
                                              "state": {"waiting": {"reason": "CrashLoopBackOff"}}}]}}


def observe(**overrides: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "generation": 3, "now": NOW, "previous": {}, "source": SOURCE,
        "compile": CompileView(KEY, "alice-compile-aaaaaaaa", CompileDone(ARTIFACT, False)),
        "deployment": deployment(KEY, ARTIFACT), "server_pods": [], "url": URL, "pending_grace_seconds": 120,
    }
    values.update(overrides)
    return compute_deployment_status(DeploymentObservation(**values))


def cond(status: dict[str, Any], type_: str) -> tuple[str, str]:
    found = next(c for c in status["conditions"] if c["type"] == type_)
    return found["status"], found["reason"]


COMPILED_BEFORE = {"compileKey": OLD_KEY, "compiledArtifact": OLD_ARTIFACT, "compileJob": "alice-compile-bbbbbbbb",
                   "liveArtifact": OLD_ARTIFACT,
                   "conditions": [{"type": "Compiled", "status": "True", "reason": "Compiled", "message": "",
                                   "lastTransitionTime": EARLIER}]}

# name: (observation overrides, phase, failure reason or None, {condition: (status, reason)})
SCENARIOS: dict[str, tuple[dict[str, Any], str, str | None, dict[str, tuple[str, str]]]] = {
    "fine-tune missing": (
        {"source": FineTuneWait("FineTuneNotFound", "no such fine-tune"), "compile": None, "deployment": None},
        "Pending", None, {"FineTuneReady": ("False", "FineTuneNotFound"), "Ready": ("False", "WaitingForFineTune")}),
    "fine-tune failed": (
        {"source": FineTuneWait("FineTuneFailed", "SDXLFineTune ft failed (OutOfMemory): x", failed=True),
         "compile": None, "deployment": None},
        "Failed", "FineTuneFailed", {"Ready": ("False", "FineTuneFailed")}),
    "compiling": (
        {"compile": CompileView(KEY, "j", CompileRunning("CompileJobRunning", "running")), "deployment": None},
        "Compiling", None, {"Compiled": ("False", "CompileJobRunning"), "Available": ("False", "NoDeployment")}),
    "compile pod unschedulable": (
        {"compile": CompileView(KEY, "j", CompileRunning("Unschedulable", "no node", PodProblem(
            FailureReason.UNSCHEDULABLE, "no node can run the pod"))), "deployment": None},
        "Compiling", "Unschedulable", {"Ready": ("False", "Unschedulable")}),
    "compile failed": (
        {"compile": CompileView(KEY, "j", CompileFailed(FailureReason.INVALID_INPUT, "lora missing", 2, EARLIER)),
         "deployment": None},
        "Failed", "InvalidInput", {"Compiled": ("False", "InvalidInput")}),
    "deploying": (
        {"deployment": deployment(KEY, ARTIFACT, updated=1, ready=0)},
        "Deploying", None, {"Compiled": ("True", "Compiled"), "Ready": ("False", "RollingOut")}),
    "server crash loop": (
        {"deployment": deployment(KEY, ARTIFACT, updated=1, ready=0), "server_pods": [crashing_pod(KEY)]},
        "Deploying", "CrashLoopBackOff", {"Ready": ("False", "CrashLoopBackOff")}),
    "server out of memory": (
        {"deployment": deployment(KEY, ARTIFACT, updated=1, ready=0), "server_pods": [crashing_pod(KEY, oom=True)]},
        "Deploying", "OutOfMemory", {}),
    "ready": ({}, "Ready", None, {"Available": ("True", "MinimumReplicasAvailable"), "Ready": ("True", "Ready")}),
    "scaled to zero": (
        {"deployment": deployment(KEY, ARTIFACT, replicas=0, updated=0, ready=0)},
        "Ready", None, {"Available": ("False", "ScaledToZero")}),
    "new key compiling while the old serves": (
        {"previous": COMPILED_BEFORE, "deployment": deployment(OLD_KEY, OLD_ARTIFACT),
         "compile": CompileView(KEY, "j", CompileRunning("CompileJobRunning", "running"))},
        "Compiling", None, {"Available": ("True", "MinimumReplicasAvailable"), "Compiled": ("False", "CompileJobRunning")}),
    "new key compiled, rollout under way": (
        {"previous": COMPILED_BEFORE, "deployment": deployment(KEY, ARTIFACT, updated=1, total=3, generation=4)},
        "Deploying", None, {}),
    "new key on every wanted pod, an old pod still serving": (
        {"previous": COMPILED_BEFORE, "deployment": deployment(KEY, ARTIFACT, updated=2, ready=3, total=3)},
        "Deploying", None, {"Ready": ("False", "RollingOut")}),
    "new key failed while the old serves": (
        {"previous": COMPILED_BEFORE, "deployment": deployment(OLD_KEY, OLD_ARTIFACT),
         "compile": CompileView(KEY, "j", CompileFailed(FailureReason.OUT_OF_MEMORY, "OOMKilled", 137, None))},
        "Failed", "OutOfMemory", {"Available": ("True", "MinimumReplicasAvailable")}),
    "fine-tune deleted after compiling": (
        {"previous": {**COMPILED_BEFORE, "compileKey": KEY, "compiledArtifact": ARTIFACT},
         "source": FineTuneWait("FineTuneNotFound", "gone"), "compile": None},
        "Ready", None, {"FineTuneReady": ("False", "FineTuneNotFound")}),
}


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_status_per_outcome_fits_the_crd(scenario: str) -> None:
    overrides, phase, reason, conditions = SCENARIOS[scenario]
    status = observe(**overrides)
    assert status["phase"] == phase
    assert (status.get("failure") or {}).get("reason") == reason
    for type_, expected in conditions.items():
        assert cond(status, type_) == expected, (type_, status["conditions"])
    assert status["observedGeneration"] == 3
    body = {"apiVersion": "sdxl.io/v1alpha1", "kind": "SDXLDeployment", "metadata": {"name": "alice"},
            "spec": {"fineTune": "ft"}, "status": status}
    assert validate_against_crd(body, "SDXLDeployment") == []


def test_live_artifact_follows_the_completed_rollout_only() -> None:
    during = observe(previous=COMPILED_BEFORE, deployment=deployment(KEY, ARTIFACT, updated=1, total=3, generation=4))
    assert during["liveArtifact"] == OLD_ARTIFACT and during["compiledArtifact"] == ARTIFACT
    after = observe(previous=during, deployment=deployment(KEY, ARTIFACT))
    assert after["liveArtifact"] == ARTIFACT and after["phase"] == "Ready"
    assert after["url"] == URL and (after["replicas"], after["readyReplicas"]) == (2, 2)
    stale = observe(previous=during, deployment=deployment(KEY, ARTIFACT, generation=5, observed=4))
    assert stale["phase"] == "Deploying"  # the Deployment controller has not seen the newest spec


# (wanted, replicas, updated, ready, generation, observed) -> done: `kubectl rollout status`'s rule.
ROLLOUTS = {
    "all current and ready": ((2, 2, 2, 2, 3, 3), True),
    "scaled to zero": ((0, 0, 0, 0, 3, 3), True),
    "an old replica still serves beside the new ones": ((2, 3, 2, 3, 3, 3), False),
    "an old replica still serves, the new one not ready": ((2, 3, 2, 2, 3, 3), False),
    "a new replica not ready yet": ((2, 2, 2, 1, 3, 3), False),
    "fewer replicas than wanted": ((3, 2, 2, 2, 3, 3), False),
    "controller has not seen the spec": ((2, 2, 2, 2, 4, 3), False),
}


@pytest.mark.parametrize("case", sorted(ROLLOUTS))
def test_rollout_is_done_only_when_every_replica_is_updated_and_ready(case: str) -> None:
    (wanted, replicas, updated, ready, generation, observed), done = ROLLOUTS[case]
    found = deployment(KEY, ARTIFACT, replicas=wanted, updated=updated, ready=ready, total=replicas,
                       generation=generation, observed=observed)
    assert rollout_done(found) is done
    status = observe(previous=COMPILED_BEFORE, deployment=found, generation=3)
    assert (status["phase"] == "Ready") is done
    assert status["liveArtifact"] == (ARTIFACT if done else OLD_ARTIFACT)


def test_failure_time_and_transition_times_hold_while_nothing_changes() -> None:
    view = CompileView(KEY, "j", CompileFailed(FailureReason.COMPILE_FAILED, "boom", 1, None))
    first = observe(compile=view, deployment=None)
    later = observe(compile=view, deployment=None, previous=first,
                    now=NOW + datetime.timedelta(minutes=5))
    assert later["failure"]["time"] == first["failure"]["time"]
    assert [c["lastTransitionTime"] for c in later["conditions"]] == [c["lastTransitionTime"] for c in first["conditions"]]


def test_invalid_spec_status_keeps_what_still_serves() -> None:
    status = invalid_spec_status(["spec.replicas: must be at most 100, got 500"], now=NOW, generation=4,
                                 previous={**COMPILED_BEFORE, "url": URL})
    assert status["phase"] == "Failed" and status["failure"]["reason"] == "InvalidSpec"
    assert status["liveArtifact"] == OLD_ARTIFACT and status["url"] == URL


def _job(condition: str | None, reason: str = "") -> dict[str, Any]:
    conditions = [{"type": condition, "status": "True", "reason": reason, "lastTransitionTime": EARLIER}] \
        if condition else []
    return {"metadata": {"annotations": {"sdxl.io/compiled-artifact": ARTIFACT}},
            "spec": {"activeDeadlineSeconds": 14400}, "status": {"conditions": conditions}}


def _ended(message: str, code: int, reason: str = "Error", phase: str = "Failed") -> dict[str, Any]:
    return {"metadata": {"name": "p", "creationTimestamp": EARLIER}, "status": {"phase": phase, "containerStatuses": [
        {"name": "compiler", "state": {"terminated": {"exitCode": code, "message": message, "reason": reason}}}]}}


@pytest.mark.parametrize("job, pods, expected", [
    (_job("Complete"), [_ended(json.dumps({"status": "Succeeded", "artifacts": {"compiled": "s3://x/compiled/k"},
                                           "metrics": {"cacheHit": True}}), 0, "Completed", "Succeeded")],
     CompileDone("s3://x/compiled/k", True)),
    (_job("Complete"), [], CompileDone(ARTIFACT, False)),
    (_job("Failed", "DeadlineExceeded"), [], FailureReason.DEADLINE_EXCEEDED),
    (_job("Failed", "PodFailurePolicy"), [_ended(json.dumps({"status": "Failed", "reason": "InvalidInput",
                                                             "message": "bad lora"}), 2)], FailureReason.INVALID_INPUT),
    (_job("Failed", "BackoffLimitExceeded"), [_ended("Killed", 137, "OOMKilled")], FailureReason.OUT_OF_MEMORY),
    (_job("Failed", "BackoffLimitExceeded"), [_ended("Traceback: neuronx-cc exited 70", 1)],
     FailureReason.COMPILE_FAILED),
    (_job(None), [], "CompileJobPending"),
])
def test_compile_outcome(job: dict[str, Any], pods: list[dict[str, Any]], expected: Any) -> None:
    outcome = compile_outcome(job, pods, now=NOW, pending_grace_seconds=120)
    if isinstance(expected, CompileDone):
        assert outcome == expected
    elif isinstance(expected, FailureReason):
        assert isinstance(outcome, CompileFailed) and outcome.reason is expected and outcome.message
    else:
        assert isinstance(outcome, CompileRunning) and outcome.reason == expected


def test_model_source_from_finetune_states() -> None:
    spec = {"fineTune": "ft"}
    missing = model_source(spec, None)
    assert isinstance(missing, FineTuneWait) and missing.reason == "FineTuneNotFound" and not missing.failed
    training = model_source(spec, {"status": {"phase": "Training", "progress": {"step": 3, "totalSteps": 10}}})
    assert isinstance(training, FineTuneWait) and training.reason == "FineTuneTraining" and "step 3 of 10" in training.message
    failed = model_source(spec, {"status": {"phase": "Failed", "failure": {"reason": "OutOfMemory", "message": "m"}}})
    assert isinstance(failed, FineTuneWait) and failed.failed and "OutOfMemory" in failed.message
    done = model_source(spec, {"spec": {"baseModel": "builtin:tiny", "baseModelRevision": "v2"}, "status": {
        "phase": "Succeeded", "artifacts": {"lora": "s3://l", "loraSha256": "c" * 64}}})
    assert done == ModelSource("s3://l", "c" * 64, "builtin:tiny", "v2", "ft")
    direct = model_source({"lora": "s3://d", "baseModel": "m", "loraSha256": "d" * 64}, None)
    assert direct == ModelSource("s3://d", "d" * 64, "m", "main", None)


@pytest.mark.parametrize("spec, message", [
    ({"fineTune": "ft", "lora": "s3://b/l"}, "set exactly one of spec.fineTune"),
    ({}, "set exactly one of spec.fineTune"),
    ({"lora": "s3://b/l"}, "spec.baseModel: required with spec.lora"),
    ({"fineTune": "ft", "loraSha256": "a" * 64}, "spec.loraSha256: pins the file named by spec.lora"),
    ({"fineTune": "ft", "accelerator": "cpu", "neuron": {"height": 512}}, "spec.neuron: only allowed with"),
    ({"fineTune": "ft", "neuron": {"height": 1020}}, "spec.neuron.height: must be a multiple of 8"),
    ({"fineTune": "ft", "neuron": {"instanceType": "g5.xlarge"}}, "spec.neuron.instanceType"),
    ({"fineTune": "ft", "replicas": 101}, "spec.replicas: must be between 0 and 100"),
    ({"fineTune": "ft", "autoscaling": {"minReplicas": 5, "maxReplicas": 2}}, "must not be greater than"),
    ({"fineTune": "ft", "autoscaling": {}}, "spec.autoscaling.maxReplicas: required"),
    ({"fineTune": "ft", "auth": {}}, "spec.auth.apiKeySecret: required"),
    ({"fineTune": "ft", "auth": {"apiKeySecret": "k", "apiKeySecretKey": ".."}}, "spec.auth.apiKeySecretKey: must be"),
    ({"fineTune": "ft", "auth": {"apiKeySecret": "k", "apiKeySecretKey": "..key"}}, "spec.auth.apiKeySecretKey"),
    ({"fineTune": "ft", "auth": {"apiKeySecret": "k", "apiKeySecretKey": "."}}, "spec.auth.apiKeySecretKey"),
    ({"lora": "builtin:x", "baseModel": "builtin:tiny"}, "there is no embedded LoRA"),
    ({"fineTune": "ft", "resources": {"memory": 24}}, "spec.resources.memory: must be a string"),
    ({"fineTune": "ft", "accelerator": "tpu"}, "spec.accelerator: must be one of neuron, nvidia, cpu"),
])
def test_validation_names_the_field(spec: dict[str, Any], message: str) -> None:
    errors = validate_deployment_spec(spec)
    assert any(message in error for error in errors), errors


def test_examples_are_valid() -> None:
    import yaml

    for example in sorted((REPO / "crds" / "examples").glob("deployment*.yaml")):
        assert validate_deployment_spec(yaml.safe_load(example.read_text())["spec"]) == [], example.name


# (phase, failure reason, observedGeneration, generation) -> settled: no more status ticks.
SETTLED = {
    "ready and current": (("Ready", None, 3, 3), True),
    "ready for an older spec": (("Ready", None, 2, 3), False),
    "invalid spec (only a spec change helps)": (("Failed", "InvalidSpec", 3, 3), True),
    "name conflict (the object may go)": (("Failed", "NameConflict", 3, 3), False),
    "claim missing (it may be created)": (("Failed", "StorageNotFound", 3, 3), False),
    "compiling": (("Compiling", None, 3, 3), False),
    "deploying": (("Deploying", None, 3, 3), False),
    "no status yet": ((None, None, 0, 1), False),
}


@pytest.mark.parametrize("case", sorted(SETTLED))
def test_only_a_settled_deployment_stops_its_ticks(case: str) -> None:
    (phase, reason, observed, generation), settled = SETTLED[case]
    status: dict[str, Any] = {"observedGeneration": observed}
    if phase:
        status["phase"] = phase
    if reason:
        status["failure"] = {"reason": reason, "message": "m"}
    assert is_settled({"metadata": {"generation": generation}, "status": status}) is settled
