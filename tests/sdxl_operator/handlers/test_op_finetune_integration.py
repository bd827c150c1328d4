"""The real operator against the emulator over HTTP: the tests play the Job controller and the kubelet.

Fixtures (``cluster``, ``operator_runner``) are in this folder's conftest.py.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

pytestmark = [pytest.mark.asyncio, pytest.mark.slow]

PROGRESS = '{"event": "progress", "step": %d, "totalSteps": 10, "loss": %s, "etaSeconds": %d}\n'
SHA = "ab" * 32


async def test_success_reports_progress_then_artifacts(cluster: Any, operator_runner: Any) -> None:
    async with operator_runner():
        await cluster.create_finetune("ft")
        status = await cluster.wait_for_status("ft", lambda s: s.get("phase") == "Pending")
        assert status["trainingJob"] == "ft-train"
        job = await cluster.wait_for("the Job", lambda: cluster.job("ft-train"))
        spec_json = json.loads(cluster.configmap("ft-spec")["data"]["spec.json"])
        assert spec_json["output"].startswith("s3://sdxl-artifacts/store/finetunes/team-a/ft/")
        assert job["metadata"]["ownerReferences"][0]["kind"] == "SDXLFineTune"

        pod = await cluster.start_pod("ft-train")
        await cluster.run_pod(pod)
        cluster.log(pod, "loading model\n" + PROGRESS % (3, "0.5", 70) + "a log line\n")
        status = await cluster.wait_for_status("ft", lambda s: s.get("progress", {}).get("step") == 3)
        assert status["phase"] == "Training"
        assert status["progress"]["loss"] == 0.5 and status["progress"]["totalSteps"] == 10
        assert status["progress"]["etaSeconds"] == 70 and status["progress"]["updatedAt"]

        cluster.log(pod, PROGRESS % (9, "0.25", 5))
        await cluster.wait_for_status("ft", lambda s: s.get("progress", {}).get("step") == 9)

        result = {"status": "Succeeded",
                  "artifacts": {"lora": "s3://b/lora/pytorch_lora_weights.safetensors", "kohyaLora": "s3://b/k.safetensors",
                                "validationImages": "s3://b/validation"},
                  "metrics": {"loraSha256": SHA, "finalLoss": 0.2, "steps": 10, "seconds": 12.5}}
        await cluster.finish_pod(pod, exit_code=0, message=json.dumps(result))
        await cluster.finish_job("ft-train", "Complete")
        status = await cluster.wait_for_status("ft", lambda s: s.get("phase") == "Succeeded")
        assert status["artifacts"] == {**result["artifacts"], "loraSha256": SHA}
        assert status["progress"]["step"] == 10 and status["progress"]["loss"] == 0.2
        assert status["completionTime"] and "failure" not in status
        ready = next(c for c in status["conditions"] if c["type"] == "Ready")
        assert ready["status"] == "True" and ready["reason"] == "Succeeded"
        # No finalizer, ever: deleting a fine-tune never waits for the operator.
        assert not cluster.finetune("ft")["metadata"].get("finalizers")
        # Events for the main transitions, on the custom resource.
        reasons = await cluster.wait_for("events", lambda: {
            e["reason"] for e in cluster.emulator.live_objects("v1/events", "team-a")
            if e["involvedObject"]["name"] == "ft"} >= {"JobCreated", "Training", "Succeeded"})
        assert reasons


FAILURES: dict[str, dict[str, Any]] = {
    # name: how the pod and the Job end, and what the status must say
    "bad-input": {
        "pod": {"exit_code": 2, "message": json.dumps({"status": "Failed", "reason": "InvalidInput",
                                                      "message": "instanceImages: no images found in s3://b/x"})},
        "job": ("Failed", "PodFailurePolicy", "Container trainer for pod failed with exit code 2"),
        "reason": "InvalidInput", "message": "no images found", "exit": 2,
    },
    "oom": {
        "pod": {"exit_code": 137, "message": "Killed", "reason": "OOMKilled"},
        "job": ("Failed", "BackoffLimitExceeded", "Job has reached the specified backoff limit"),
        "reason": "OutOfMemory", "message": "OOMKilled", "exit": 137,
    },
    "slow": {
        "pod": None,
        "job": ("Failed", "DeadlineExceeded", "Job was active longer than specified deadline"),
        "reason": "DeadlineExceeded", "message": "deadline", "exit": None,
    },
    "crashy": {
        "pod": {"exit_code": 1, "message": "Traceback (most recent call last):\nRuntimeError: boom"},
        "job": ("Failed", "BackoffLimitExceeded", "Job has reached the specified backoff limit"),
        "reason": "BackoffLimitExceeded", "message": "RuntimeError: boom", "exit": 1,
    },
}


async def test_each_failure_reason_reaches_the_status(cluster: Any, operator_runner: Any) -> None:
    async with operator_runner():
        for name in FAILURES:
            await cluster.create_finetune(name)
        for name, case in FAILURES.items():
            await cluster.wait_for(f"Job of {name}", lambda n=name: cluster.job(f"{n}-train"))
            pod = await cluster.start_pod(f"{name}-train")
            await cluster.run_pod(pod)
            if case["pod"] is not None:
                await cluster.finish_pod(pod, **case["pod"])
            await cluster.finish_job(f"{name}-train", *case["job"])
        for name, case in FAILURES.items():
            status = await cluster.wait_for_status(name, lambda s: s.get("phase") == "Failed")
            failure = status["failure"]
            assert failure["reason"] == case["reason"], (name, failure)
            assert case["message"] in failure["message"], (name, failure)
            assert failure.get("exitCode") == case["exit"], (name, failure)
            ready = next(c for c in status["conditions"] if c["type"] == "Ready")
            assert (ready["status"], ready["reason"]) == ("False", case["reason"])
        expected = {"InvalidInput", "OutOfMemory", "DeadlineExceeded", "BackoffLimitExceeded"}
        await cluster.wait_for("Warning events", lambda: expected <= {
            e["reason"] for e in cluster.emulator.live_objects("v1/events", "team-a") if e["type"] == "Warning"})


async def test_image_pull_failure_and_unschedulable_pod_show_on_the_resource(cluster: Any, operator_runner: Any) -> None:
    async with operator_runner(pending_grace_seconds=3.0):
        await cluster.create_finetune("pull")
        await cluster.create_finetune("nogpu")
        await cluster.wait_for("Jobs", lambda: cluster.job("pull-train") and cluster.job("nogpu-train"))

        pull_pod = await cluster.start_pod("pull-train", status={
            "phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "True"}],
            "containerStatuses": [{"name": "trainer", "image": "reg/train:missing", "ready": False, "state": {
                "waiting": {"reason": "ImagePullBackOff", "message": "Back-off pulling image reg/train:missing"}}}],
        })
        status = await cluster.wait_for_status("pull", lambda s: "failure" in s)
        assert status["phase"] == "Pending"
        assert status["failure"]["reason"] == "ImagePullFailed"
        assert "reg/train:missing" in status["failure"]["message"]

        unschedulable = {"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                         "message": "0/3 nodes are available: 3 Insufficient nvidia.com/gpu.",
                         "lastTransitionTime": _now()}
        await cluster.start_pod("nogpu-train", status={"phase": "Pending", "conditions": [unschedulable]})
        status = await cluster.wait_for_status("nogpu", lambda s: any(
            c["type"] == "Scheduled" and c["reason"] == "WaitingForNode" for c in s.get("conditions", [])))
        assert status["phase"] == "Pending" and "failure" not in status  # still within the grace
        status = await cluster.wait_for_status("nogpu", lambda s: "failure" in s)  # the grace is 3 s here
        assert status["phase"] == "Pending"
        assert status["failure"]["reason"] == "Unschedulable"
        assert "Insufficient nvidia.com/gpu" in status["failure"]["message"]
        scheduled = next(c for c in status["conditions"] if c["type"] == "Scheduled")
        assert (scheduled["status"], scheduled["reason"]) == ("False", "Unschedulable")

        # A node shows up / the image is fixed: the run goes on and the failure is cleared.
        await cluster.run_pod(pull_pod)
        status = await cluster.wait_for_status("pull", lambda s: s.get("phase") == "Training")
        assert "failure" not in status


async def test_invalid_spec_fails_without_creating_children(cluster: Any, operator_runner: Any, tiny_spec: Any) -> None:
    tiny_spec["training"]["rank"] = 0
    tiny_spec["resources"]["cpu"] = 8
    async with operator_runner():
        await cluster.create_finetune("bad", tiny_spec)
        status = await cluster.wait_for_status("bad", lambda s: s.get("phase") == "Failed")
        assert status["failure"]["reason"] == "InvalidSpec"
        assert "spec.training.rank: must be between 1 and 256, got 0" in status["failure"]["message"]
        assert "spec.resources.cpu: must be a string" in status["failure"]["message"]
        accepted = next(c for c in status["conditions"] if c["type"] == "Accepted")
        assert (accepted["status"], accepted["reason"]) == ("False", "InvalidSpec")
        assert not cluster.finetune("bad")["metadata"].get("finalizers")
        assert cluster.jobs() == [] and cluster.configmap("bad-spec") is None


async def test_operator_restart_mid_run_creates_nothing_twice_and_status_continues(
    cluster: Any, operator_runner: Any
) -> None:
    async with operator_runner():
        await cluster.create_finetune("ft")
        await cluster.wait_for("the Job", lambda: cluster.job("ft-train"))
        pod = await cluster.start_pod("ft-train")
        await cluster.run_pod(pod)
        cluster.log(pod, PROGRESS % (2, "0.9", 80))
        await cluster.wait_for_status("ft", lambda s: s.get("progress", {}).get("step") == 2)
        job_uid = cluster.job("ft-train")["metadata"]["uid"]

    cluster.log(pod, PROGRESS % (6, "0.4", 40))  # the trainer went on while the operator was away
    async with operator_runner():
        status = await cluster.wait_for_status("ft", lambda s: s.get("progress", {}).get("step") == 6)
        assert status["phase"] == "Training"
        assert [j["metadata"]["uid"] for j in cluster.jobs()] == [job_uid]
        assert len(cluster.emulator.live_objects("v1/configmaps", "team-a")) == 1
        await cluster.finish_pod(pod, exit_code=0, message=json.dumps(
            {"status": "Succeeded", "artifacts": {"lora": "s3://b/lora.safetensors"}, "metrics": {"steps": 10}}))
        await cluster.finish_job("ft-train", "Complete")
        status = await cluster.wait_for_status("ft", lambda s: s.get("phase") == "Succeeded")
        assert status["artifacts"] == {"lora": "s3://b/lora.safetensors"}


async def test_deletion_collects_children_and_never_hangs(cluster: Any, operator_runner: Any) -> None:
    async with operator_runner():
        await cluster.create_finetune("running")
        await cluster.create_finetune("done")
        await cluster.wait_for("Jobs", lambda: cluster.job("running-train") and cluster.job("done-train"))
        await cluster.wait_for_status("running", lambda s: s.get("trainingJob") == "running-train")
        await cluster.finish_job("done-train", "Complete")
        await cluster.wait_for_status("done", lambda s: s.get("phase") == "Succeeded")

        # Neither holds a finalizer: a finished run and a running one are both gone at once.
        assert not cluster.finetune("running")["metadata"].get("finalizers")
        await cluster.delete_finetune("done")
        assert cluster.finetune("done") is None
        await cluster.delete_finetune("running")
        assert cluster.finetune("running") is None
        assert cluster.jobs() == []
        assert cluster.emulator.live_objects("v1/configmaps", "team-a") == []


def _now() -> str:
    import datetime

    return datetime.datetime.now(tz=datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


async def test_a_spec_changed_mid_run_does_not_claim_to_be_observed(cluster: Any, operator_runner: Any) -> None:
    # The CRD forbids this (spec is immutable); the emulator has no CEL, so it stands in for a CRD without it.
    async with operator_runner():
        await cluster.create_finetune("ft")
        await cluster.wait_for("the Job", lambda: cluster.job("ft-train"))
        await cluster.wait_for_status("ft", lambda s: s.get("trainingJob") == "ft-train")
        await cluster._call("patch", "/apis/sdxl.io/v1alpha1/namespaces/team-a/sdxlfinetunes/ft",
                            {"spec": {"training": {"maxSteps": 99}}})
        assert cluster.finetune("ft")["metadata"]["generation"] == 2
        pod = await cluster.start_pod("ft-train")
        await cluster.run_pod(pod)
        status = await cluster.wait_for_status("ft", lambda s: s.get("phase") == "Training")
        assert status["observedGeneration"] == 1
        assert [j["metadata"]["uid"] for j in cluster.jobs()] == [cluster.job("ft-train")["metadata"]["uid"]]


async def test_a_job_the_api_server_refuses_fails_the_run_with_a_reason(cluster: Any, operator_runner: Any) -> None:
    # Stands in for an admission webhook or quota that rejects the Job outright.
    cluster.emulator["post", "/apis/batch/v1/namespaces/team-a/jobs"] << 422 << {
        "apiVersion": "v1", "kind": "Status", "status": "Failure", "reason": "Invalid", "code": 422,
        "message": "Job.batch refused-train is invalid: denied by policy"}
    async with operator_runner():
        await cluster.create_finetune("refused")
        status = await cluster.wait_for_status("refused", lambda s: s.get("phase") == "Failed")
        assert status["failure"]["reason"] == "Rejected"
        assert "denied by policy" in status["failure"]["message"]
        # (KMock stores intercepted writes anyway, so the Job's absence cannot be checked here.)
        await cluster.wait_for("the Warning event", lambda: any(
            e["reason"] == "Rejected" and "denied by policy" in e["message"]
            for e in cluster.emulator.live_objects("v1/events", "team-a")))
        assert not cluster.finetune("refused")["metadata"].get("finalizers")


# --- install anywhere, own only what it created, never stuck without a reason ---------------------------

async def _leftover_job(cluster: Any, name: str, owner_uid: str | None) -> dict[str, Any]:
    """A finished Job named like a fine-tune's, with a succeeded pod reporting an old LoRA."""
    meta: dict[str, Any] = {"name": name, "namespace": "team-a"}
    if owner_uid:
        meta["ownerReferences"] = [{"apiVersion": "sdxl.io/v1alpha1", "kind": "SDXLFineTune", "name": "ft",
                                    "uid": owner_uid, "controller": True, "blockOwnerDeletion": True}]
    await cluster._call("post", "/apis/batch/v1/namespaces/team-a/jobs", {
        "apiVersion": "batch/v1", "kind": "Job", "metadata": meta,
        "spec": {"template": {"metadata": {"labels": {}},
                              "spec": {"restartPolicy": "Never", "containers": [{"name": "trainer", "image": "x"}]}}}})
    pod = await cluster.start_pod(name)
    await cluster.finish_pod(pod, exit_code=0, message=json.dumps(
        {"status": "Succeeded", "artifacts": {"lora": "s3://old-run/lora.safetensors"}}))
    await cluster.finish_job(name, "Complete")
    return cluster.job(name)  # type: ignore[no-any-return]


@pytest.mark.parametrize("owner_uid", [None, "0000-older-finetune"], ids=["foreign", "older-object"])
async def test_a_leftover_job_is_never_read_as_this_runs_result(cluster: Any, operator_runner: Any,
                                                                owner_uid: str | None) -> None:
    before = await _leftover_job(cluster, "ft-train", owner_uid)
    async with operator_runner():
        await cluster.create_finetune("ft")
        status = await cluster.wait_for_status("ft", lambda s: s.get("phase") == "Failed")
        assert status["failure"]["reason"] == "NameConflict"
        assert "Job team-a/ft-train" in status["failure"]["message"]
        assert "artifacts" not in status
        assert cluster.job("ft-train")["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]


async def test_the_workload_account_is_created_where_missing_and_an_existing_one_is_used_as_is(
    cluster: Any, operator_runner: Any
) -> None:
    role = "arn:aws:iam::123456789012:role/sdxl-artifacts"
    settings = {"workload_service_account": "sdxl-workload",
                "workload_service_account_annotations": {"eks.amazonaws.com/role-arn": role}}
    accounts = lambda: cluster.emulator.live_objects("v1/serviceaccounts", "team-a")  # noqa: E731
    async with operator_runner(**settings):
        await cluster.create_finetune("ft")
        await cluster.wait_for("the Job", lambda: cluster.job("ft-train"))
        [account] = [a for a in accounts() if a["metadata"]["name"] == "sdxl-workload"]
        assert account["metadata"]["annotations"] == {"eks.amazonaws.com/role-arn": role}
        assert account["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "sdxl-operator"
        assert account["automountServiceAccountToken"] is False
        assert cluster.job("ft-train")["spec"]["template"]["spec"]["serviceAccountName"] == "sdxl-workload"

    # An administrator's own account (a namespace's own identity) is used and never modified.
    mine = "arn:aws:iam::123456789012:role/team-a-only"
    await cluster._call("patch", "/api/v1/namespaces/team-a/serviceaccounts/sdxl-workload",
                        {"metadata": {"annotations": {"eks.amazonaws.com/role-arn": mine}, "labels": None}},
                        "application/merge-patch+json")
    version = next(a for a in accounts() if a["metadata"]["name"] == "sdxl-workload")["metadata"]["resourceVersion"]
    async with operator_runner(**settings):
        await cluster.create_finetune("ft2")
        await cluster.wait_for("the second Job", lambda: cluster.job("ft2-train"))
        [account] = [a for a in accounts() if a["metadata"]["name"] == "sdxl-workload"]
        assert account["metadata"]["resourceVersion"] == version
        assert account["metadata"]["annotations"] == {"eks.amazonaws.com/role-arn": mine}


async def test_a_missing_artifact_claim_is_named_then_the_run_starts_once_it_exists(cluster: Any,
                                                                                      operator_runner: Any) -> None:
    async with operator_runner(artifact_store="pvc://sdxl-artifacts/store"):
        await cluster.create_finetune("ft")
        status = await cluster.wait_for_status("ft", lambda s: (s.get("failure") or {}).get("reason") == "StorageNotFound")
        assert status["phase"] == "Pending"
        assert "PersistentVolumeClaim team-a/sdxl-artifacts" in status["failure"]["message"]
        assert cluster.job("ft-train") is None
        await cluster._call("post", "/api/v1/namespaces/team-a/persistentvolumeclaims", {
            "apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "sdxl-artifacts"},
            "spec": {"accessModes": ["ReadWriteMany"], "resources": {"requests": {"storage": "10Gi"}}}})
        await cluster.wait_for("the Job", lambda: cluster.job("ft-train"), timeout=20)
        status = await cluster.wait_for_status("ft", lambda s: "failure" not in s and s.get("trainingJob"))
        assert status["phase"] == "Pending"


async def test_a_job_that_cannot_create_its_pod_shows_the_api_servers_words(cluster: Any,
                                                                           operator_runner: Any) -> None:
    quota = ('Error creating: pods "ft-train-x" is forbidden: exceeded quota: gpu, requested: '
             'requests.nvidia.com/gpu=1, used: requests.nvidia.com/gpu=0, limited: requests.nvidia.com/gpu=0')
    async with operator_runner():
        await cluster.create_finetune("ft")
        job = await cluster.wait_for("the Job", lambda: cluster.job("ft-train"))
        # Played the Job controller: it cannot create the pod and says why in an Event.
        await cluster._call("post", "/api/v1/namespaces/team-a/events", {
            "apiVersion": "v1", "kind": "Event", "metadata": {"name": "ft-train.1", "namespace": "team-a"},
            "involvedObject": {"apiVersion": "batch/v1", "kind": "Job", "name": "ft-train", "namespace": "team-a",
                               "uid": job["metadata"]["uid"]},
            "reason": "FailedCreate", "type": "Warning", "message": quota, "lastTimestamp": _now(),
            "source": {"component": "job-controller"}})
        status = await cluster.wait_for_status("ft", lambda s: (s.get("failure") or {}).get("reason") ==
                                               "PodCreationFailed")
        assert status["phase"] == "Pending" and quota in status["failure"]["message"]
        pod = await cluster.start_pod("ft-train")
        await cluster.run_pod(pod)
        status = await cluster.wait_for_status("ft", lambda s: s.get("phase") == "Training")
        assert "failure" not in status
