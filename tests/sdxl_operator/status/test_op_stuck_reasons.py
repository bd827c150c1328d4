"""Every stuck state has a reason on the resource, in the API server's words: a Job that cannot create its
pod (FailedCreate Events: missing ServiceAccount, exceeded quota, admission denied), a Deployment's
ReplicaFailure and ProgressDeadlineExceeded, a missing claim. Pure functions, table-driven."""

from __future__ import annotations

import datetime
from typing import Any

import pytest

from sdxl_contract.failure_reasons import FailureReason
from sdxl_operator.core.settings import OperatorSettings
from sdxl_operator.handlers.workload_prerequisites import (
    build_workload_service_account,
    claims_of,
    missing_claim_message,
)
from sdxl_operator.spec.model_source import ModelSource
from sdxl_operator.status.compile_outcome import CompileDone, CompileRunning, compile_outcome
from sdxl_operator.status.deployment_status import (
    CompileView,
    DeploymentObservation,
    compute_deployment_status,
)
from sdxl_operator.status.finetune_status import compute_finetune_status
from sdxl_operator.status.pod_problems import deployment_problem, failed_create_selector, pod_creation_failure

NOW = datetime.datetime(2026, 11, 26, 12, 0, tzinfo=datetime.timezone.utc)
JOB = {"metadata": {"name": "alice-train", "namespace": "team-a", "uid": "job-uid"}, "status": {}}
QUOTA = ('Error creating: pods "alice-train-x" is forbidden: exceeded quota: gpu, requested: '
         'requests.nvidia.com/gpu=1, used: requests.nvidia.com/gpu=0, limited: requests.nvidia.com/gpu=0')
NO_ACCOUNT = ('Error creating: pods "alice-train-x" is forbidden: error looking for service account '
              'team-a/sdxl-workload: serviceaccount "sdxl-workload" not found')
WEBHOOK = 'Error creating: admission webhook "validate.kyverno.svc" denied the request: no GPUs for team-a'


def event(message: str, *, when: str = "2026-11-26T11:59:00Z", uid: str | None = "job-uid",
          reason: str = "FailedCreate", name: str = "alice-train") -> dict[str, Any]:
    involved: dict[str, Any] = {"kind": "Job", "name": name, "namespace": "team-a"}
    if uid is not None:
        involved["uid"] = uid
    return {"reason": reason, "type": "Warning", "message": message, "involvedObject": involved,
            "lastTimestamp": when}


@pytest.mark.parametrize("message", [QUOTA, NO_ACCOUNT, WEBHOOK])
def test_a_job_that_cannot_create_its_pod_quotes_the_api_server(message: str) -> None:
    problem = pod_creation_failure(JOB, [event(message)])
    assert problem is not None and problem.reason is FailureReason.POD_CREATION_FAILED
    assert message in problem.message and "alice-train" in problem.message


@pytest.mark.parametrize(("events", "expected"), [
    ([], None),
    ([event(QUOTA, uid="older-job-uid")], None),  # an older Job of the same name is not this one
    ([event(QUOTA, reason="SuccessfulCreate")], None),
    ([event(QUOTA, name="other-train")], None),
    ([event(QUOTA, uid=None)], QUOTA),  # events without a uid still name the Job
    ([event(NO_ACCOUNT, when="2026-11-26T11:00:00Z"), event(QUOTA, when="2026-11-26T11:59:00Z")], QUOTA),
])
def test_only_this_jobs_newest_failed_create_counts(events: list[dict[str, Any]], expected: str | None) -> None:
    problem = pod_creation_failure(JOB, events)
    if expected is None:
        assert problem is None
    else:
        assert problem is not None and expected in problem.message
        assert all(e["message"] == expected or e["message"] not in problem.message for e in events)


def test_the_event_selector_names_the_job() -> None:
    assert failed_create_selector(JOB) == "involvedObject.kind=Job,involvedObject.name=alice-train,reason=FailedCreate"


def test_a_training_job_without_a_pod_reports_why_and_stays_pending() -> None:
    status = compute_finetune_status(job_name="alice-train", job=JOB, pods=[], progress=None, now=NOW, previous={},
                                     generation=1, pending_grace_seconds=120, events=[event(NO_ACCOUNT)])
    assert status["phase"] == "Pending"
    assert status["failure"]["reason"] == "PodCreationFailed" and NO_ACCOUNT in status["failure"]["message"]
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "PodCreationFailed")
    # Once the pod exists, the reason goes.
    pod = {"metadata": {"name": "p", "creationTimestamp": "2026-11-26T11:59:30Z"},
           "status": {"phase": "Running", "conditions": [{"type": "PodScheduled", "status": "True"}],
                      "containerStatuses": [{"name": "trainer", "state": {"running": {}}}]}}
    later = compute_finetune_status(job_name="alice-train", job=JOB, pods=[pod], progress=None, now=NOW,
                                    previous=status, generation=1, pending_grace_seconds=120, events=[event(NO_ACCOUNT)])
    assert later["phase"] == "Training" and "failure" not in later


def test_a_compile_job_without_a_pod_reports_why() -> None:
    outcome = compile_outcome({**JOB, "metadata": {**JOB["metadata"], "name": "alice-train"}}, [], now=NOW,
                              pending_grace_seconds=120, events=[event(QUOTA)])
    assert isinstance(outcome, CompileRunning) and outcome.problem is not None
    assert outcome.problem.reason is FailureReason.POD_CREATION_FAILED and QUOTA in outcome.problem.message
    assert compile_outcome(JOB, [], now=NOW, pending_grace_seconds=120) == \
        CompileRunning("CompileJobPending", "the compile Job has not started a pod yet")


REPLICA_FAILURE = {"type": "ReplicaFailure", "status": "True", "reason": "FailedCreate",
                   "message": 'pods "alice-7d9" is forbidden: exceeded quota: compute, requested: limits.memory=16Gi'}
DEADLINE = {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded",
            "message": 'ReplicaSet "alice-7d9" has timed out progressing.'}
PROGRESSING = {"type": "Progressing", "status": "True", "reason": "ReplicaSetUpdated", "message": "ok"}


@pytest.mark.parametrize(("conditions", "reason", "quoted"), [
    ([REPLICA_FAILURE, PROGRESSING], FailureReason.REPLICA_FAILURE, REPLICA_FAILURE["message"]),
    ([DEADLINE], FailureReason.PROGRESS_DEADLINE_EXCEEDED, DEADLINE["message"]),
    ([PROGRESSING], None, None),
    ([{**REPLICA_FAILURE, "status": "False"}], None, None),
])
def test_deployment_conditions_that_mean_stuck(conditions: list[dict[str, Any]], reason: Any, quoted: Any) -> None:
    problem = deployment_problem({"status": {"conditions": conditions}})
    assert (problem.reason if problem else None) is reason
    if problem is not None:
        assert quoted in problem.message


def test_a_stuck_rollout_shows_on_the_sdxldeployment() -> None:
    key, artifact = "a" * 64, "s3://s/compiled/" + "a" * 64
    deployment = {"metadata": {"name": "alice", "generation": 1},
                  "spec": {"replicas": 1, "template": {"metadata": {"annotations": {
                      "sdxl.io/compile-key": key, "sdxl.io/compiled-artifact": artifact}}}},
                  "status": {"observedGeneration": 1, "replicas": 0, "conditions": [REPLICA_FAILURE]}}
    status = compute_deployment_status(DeploymentObservation(
        generation=1, now=NOW, previous={}, source=ModelSource("s3://l", None, "builtin:tiny", "main", None),
        compile=CompileView(key, "j", CompileDone(artifact, False)), deployment=deployment, server_pods=[],
        url="http://alice.team-a.svc:8080", pending_grace_seconds=120, selector="app=x"))
    assert status["phase"] == "Deploying"
    assert status["failure"]["reason"] == "ReplicaFailure" and "exceeded quota" in status["failure"]["message"]
    assert status["selector"] == "app=x"


def test_the_workload_account_the_operator_creates() -> None:
    role = {"eks.amazonaws.com/role-arn": "arn:aws:iam::123456789012:role/sdxl"}
    settings = OperatorSettings(workload_service_account="sdxl-workload", workload_service_account_annotations=role)
    assert build_workload_service_account("team-b", settings) == {
        "apiVersion": "v1", "kind": "ServiceAccount",
        "metadata": {"name": "sdxl-workload", "namespace": "team-b", "annotations": role,
                     "labels": {"app.kubernetes.io/managed-by": "sdxl-operator",
                                "app.kubernetes.io/component": "workload"}},
        "automountServiceAccountToken": False,
    }
    assert build_workload_service_account("team-b", OperatorSettings()) is None  # pods use "default"
    off = OperatorSettings(workload_service_account="sdxl-workload", create_workload_service_account=False)
    assert build_workload_service_account("team-b", off) is None


def test_claims_and_the_missing_claim_message() -> None:
    pod_spec = {"volumes": [{"name": "a", "persistentVolumeClaim": {"claimName": "sdxl-artifacts"}},
                            {"name": "b", "emptyDir": {}},
                            {"name": "c", "persistentVolumeClaim": {"claimName": "sdxl-artifacts"}},
                            {"name": "d", "persistentVolumeClaim": {"claimName": "models", "readOnly": True}}]}
    assert claims_of(pod_spec) == ["sdxl-artifacts", "models"]
    message = missing_claim_message("team-b", "sdxl-artifacts", OperatorSettings())
    assert "PersistentVolumeClaim team-b/sdxl-artifacts" in message
    assert "artifact store pvc://sdxl-artifacts/store" in message and "Create it in namespace team-b" in message
    assert "artifact store" not in missing_claim_message("team-b", "models", OperatorSettings())
