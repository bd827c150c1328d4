"""The SDXLDeployment controller, run for real against the API emulator over HTTP.

The tests play the controllers Kubernetes would run: the Job controller and kubelet for training and
compile Jobs (pods, termination messages, Job conditions) and the Deployment controller (its status:
replicas, ready and available pods). Fixtures (``cluster``, ``operator_runner``) are in this folder's
conftest.py; :class:`Serving` adds the SDXLDeployment side.
"""

from __future__ import annotations

import asyncio
import copy
import json
from typing import Any

import pytest

from sdxl_operator.handlers.kube_api import USER_AGENT

pytestmark = [pytest.mark.asyncio, pytest.mark.slow]

NS = "team-a"
DEPLOYMENTS = "sdxl.io/v1alpha1/sdxldeployments"
SHA = "ab" * 32
LORA = "s3://loras/alice/pytorch_lora_weights.safetensors"
DIRECT: dict[str, Any] = {"lora": LORA, "baseModel": "builtin:tiny", "accelerator": "cpu", "replicas": 1}


class Serving:
    """The SDXLDeployment side of the fake cluster: the user and the Deployment controller."""

    def __init__(self, cluster: Any) -> None:
        self.cluster = cluster
        self.emulator = cluster.emulator

    async def create(self, name: str, spec: dict[str, Any]) -> None:
        body = {"apiVersion": "sdxl.io/v1alpha1", "kind": "SDXLDeployment",
                "metadata": {"name": name, "namespace": NS}, "spec": copy.deepcopy(spec)}
        await self.cluster._call("post", f"/apis/sdxl.io/v1alpha1/namespaces/{NS}/sdxldeployments", body)

    async def patch_spec(self, name: str, spec: dict[str, Any]) -> None:
        await self.cluster._call("patch", f"/apis/sdxl.io/v1alpha1/namespaces/{NS}/sdxldeployments/{name}",
                                 {"spec": spec}, "application/merge-patch+json")

    async def delete(self, name: str) -> None:
        await self.cluster._call("delete", f"/apis/sdxl.io/v1alpha1/namespaces/{NS}/sdxldeployments/{name}")

    def obj(self, name: str) -> dict[str, Any] | None:
        return self.emulator.live_object(DEPLOYMENTS, NS, name)

    def status(self, name: str) -> dict[str, Any]:
        return dict((self.obj(name) or {}).get("status") or {})

    async def wait_status(self, name: str, check: Any, timeout: float = 15.0) -> dict[str, Any]:
        def probe() -> dict[str, Any] | None:
            status = self.status(name)
            return status if status and check(status) else None

        try:
            return await self.cluster.wait_for(f"status of {name}", probe, timeout)  # type: ignore[no-any-return]
        except AssertionError:
            raise AssertionError(f"status of {name} never matched; last: {json.dumps(self.status(name))}") from None

    async def wait_gone(self, name: str, timeout: float = 10.0) -> None:
        """Until the deleted SDXLDeployment is gone (it holds no finalizer: at once, or as soon as the
        emulator's garbage collection has run)."""
        try:
            await self.cluster.wait_for(f"SDXLDeployment {name} to go", lambda: self.obj(name) is None, timeout)
        except AssertionError:
            meta = (self.obj(name) or {}).get("metadata") or {}
            raise AssertionError(f"SDXLDeployment {name} still there {timeout:g}s after its deletion: "
                                 f"deletionTimestamp {meta.get('deletionTimestamp')}, finalizers "
                                 f"{meta.get('finalizers')}") from None

    def jobs(self, prefix: str = "") -> list[dict[str, Any]]:
        return [j for j in self.cluster.jobs() if j["metadata"]["name"].startswith(prefix)]

    def compile_jobs(self) -> list[dict[str, Any]]:
        return [j for j in self.cluster.jobs() if "sdxl.io/compile-key" in j["metadata"]["labels"]]

    def deployment(self, name: str) -> dict[str, Any] | None:
        return self.emulator.live_object("apps/v1/deployments", NS, name)

    def service(self, name: str) -> dict[str, Any] | None:
        return self.emulator.live_object("v1/services", NS, name)

    def hpa(self, name: str) -> dict[str, Any] | None:
        return self.emulator.live_object("autoscaling/v2/horizontalpodautoscalers", NS, name)

    async def compile_succeeds(self, job_name: str, *, cache_hit: bool = False) -> str:
        job = self.cluster.job(job_name)
        artifact = job["metadata"]["annotations"]["sdxl.io/compiled-artifact"]
        pod = await self.cluster.start_pod(job_name)
        result = {"status": "Succeeded", "artifacts": {"compiled": artifact},
                  "metrics": {"key": job["metadata"]["annotations"]["sdxl.io/compile-key"], "cacheHit": cache_hit}}
        await self.cluster.finish_pod(pod, exit_code=0, message=json.dumps(result))
        await self.cluster.finish_job(job_name, "Complete")
        return str(artifact)

    async def roll_out(self, name: str, ready: int | None = None) -> None:
        """Play the Deployment controller: every pod runs the current template and is ready."""
        deployment = self.deployment(name)
        assert deployment is not None, f"Deployment {name} does not exist"
        replicas = deployment["spec"].get("replicas", 1)
        ready = replicas if ready is None else ready
        await self.cluster._call("patch", f"/apis/apps/v1/namespaces/{NS}/deployments/{name}/status", {"status": {
            "observedGeneration": deployment["metadata"]["generation"], "replicas": replicas,
            "updatedReplicas": replicas, "readyReplicas": ready, "availableReplicas": ready,
        }})


async def succeed_finetune(cluster: Any, name: str) -> None:
    await cluster.wait_for(f"Job of {name}", lambda: cluster.job(f"{name}-train"))
    pod = await cluster.start_pod(f"{name}-train")
    result = {"status": "Succeeded", "artifacts": {"lora": f"s3://b/{name}/lora.safetensors"},
              "metrics": {"loraSha256": SHA, "steps": 10}}
    await cluster.finish_pod(pod, exit_code=0, message=json.dumps(result))
    await cluster.finish_job(f"{name}-train", "Complete")


def handler_requests(cluster: Any, verb: str, resource: str) -> int:
    """How many ``verb`` requests of ``resource`` the handlers' own client made (Kopf's aside)."""
    return sum(count for (agent, seen_verb, _, seen_resource), count in cluster.emulator.audit.items()
               if agent == USER_AGENT and (seen_verb, seen_resource) == (verb, resource))


def phase(expected: str) -> Any:
    return lambda status: status.get("phase") == expected


def condition(status: dict[str, Any], type_: str) -> tuple[str, str]:
    found = next(c for c in status["conditions"] if c["type"] == type_)
    return found["status"], found["reason"]


async def test_waits_for_the_finetune_then_compiles_deploys_and_scales(cluster: Any, operator_runner: Any,
                                                                     tiny_spec: Any) -> None:
    serving = Serving(cluster)
    async with operator_runner():
        await serving.create("alice", {"fineTune": "ft", "accelerator": "cpu", "replicas": 1})
        status = await serving.wait_status("alice", phase("Pending"))
        assert condition(status, "FineTuneReady") == ("False", "FineTuneNotFound")
        assert serving.compile_jobs() == []

        await cluster.create_finetune("ft", tiny_spec)
        await serving.wait_status("alice", lambda s: condition(s, "FineTuneReady")[1] == "FineTunePending")
        await succeed_finetune(cluster, "ft")
        status = await serving.wait_status("alice", phase("Compiling"))
        assert condition(status, "FineTuneReady") == ("True", "FineTuneSucceeded")
        key = status["compileKey"]
        job_name = f"alice-compile-{key[:8]}"
        assert status["compileJob"] == job_name
        job = cluster.job(job_name)
        args = job["spec"]["template"]["spec"]["containers"][0]["args"]
        assert "--lora" not in args and args[args.index("--key") + 1] == key
        spec_json = json.loads(cluster.configmap(job_name)["data"]["spec.json"])
        assert spec_json["baseModel"] == "builtin:tiny" and "fineTune" not in spec_json
        # The compile reads its LoRA and the LoRA's digest from the spec alone.
        assert spec_json["lora"] == "s3://b/ft/lora.safetensors" and spec_json["loraSha256"] == SHA
        assert serving.deployment("alice") is None  # nothing serves before the compile is done

        artifact = await serving.compile_succeeds(job_name)
        status = await serving.wait_status("alice", phase("Deploying"))
        assert status["compiledArtifact"] == artifact == f"s3://sdxl-artifacts/store/compiled/{key}"
        deployment = await cluster.wait_for("the Deployment", lambda: serving.deployment("alice"))
        assert deployment["metadata"]["ownerReferences"][0]["kind"] == "SDXLDeployment"
        args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
        assert args[args.index("--model") + 1] == artifact
        assert serving.service("alice")["spec"]["ports"][0]["port"] == 8080
        assert serving.hpa("alice") is None

        await serving.roll_out("alice")
        status = await serving.wait_status("alice", phase("Ready"))
        assert status["url"] == "http://alice.team-a.svc:8080"
        assert status["liveArtifact"] == artifact and status["readyReplicas"] == 1
        assert condition(status, "Available") == ("True", "MinimumReplicasAvailable")
        assert condition(status, "Ready")[0] == "True" and "failure" not in status

        template_before = deployment["spec"]["template"]
        await serving.patch_spec("alice", {"replicas": 3})
        await cluster.wait_for("3 replicas", lambda: serving.deployment("alice")["spec"]["replicas"] == 3)
        assert serving.deployment("alice")["spec"]["template"] == template_before  # no rollout for a scale
        assert len(serving.compile_jobs()) == 1
        await serving.roll_out("alice")
        await serving.wait_status("alice", lambda s: s.get("readyReplicas") == 3 and s["phase"] == "Ready")


async def test_a_failed_finetune_fails_the_deployment_with_its_message(cluster: Any, operator_runner: Any,
                                                                      tiny_spec: Any) -> None:
    serving = Serving(cluster)
    async with operator_runner():
        await cluster.create_finetune("ft", tiny_spec)
        await serving.create("alice", {"fineTune": "ft", "accelerator": "cpu"})
        await cluster.wait_for("the training Job", lambda: cluster.job("ft-train"))
        pod = await cluster.start_pod("ft-train")
        await cluster.run_pod(pod)
        await serving.wait_status("alice", lambda s: condition(s, "FineTuneReady")[1] == "FineTuneTraining")
        assert serving.status("alice")["phase"] == "Pending"
        await cluster.finish_pod(pod, exit_code=2, message=json.dumps(
            {"status": "Failed", "reason": "InvalidInput", "message": "instanceImages: no images found"}))
        await cluster.finish_job("ft-train", "Failed", "PodFailurePolicy", "exit code 2")
        status = await serving.wait_status("alice", phase("Failed"))
        assert status["failure"]["reason"] == "FineTuneFailed"
        assert "InvalidInput" in status["failure"]["message"] and "no images found" in status["failure"]["message"]
        assert condition(status, "FineTuneReady") == ("False", "FineTuneFailed")
        assert serving.compile_jobs() == [] and serving.deployment("alice") is None


async def test_compile_failure_reason_reaches_the_status(cluster: Any, operator_runner: Any) -> None:
    serving = Serving(cluster)
    async with operator_runner():
        await serving.create("oom", {**DIRECT, "loraScale": 0.5})
        await serving.create("bad", DIRECT)
        for name, pod_end, reason, text in [
            ("bad", {"exit_code": 2, "message": json.dumps({"status": "Failed", "reason": "InvalidInput",
                                                             "message": "lora: s3://loras/alice/x does not exist"})},
             "InvalidInput", "does not exist"),
            ("oom", {"exit_code": 137, "message": "Killed", "reason": "OOMKilled"}, "OutOfMemory", "OOMKilled"),
        ]:
            status = await serving.wait_status(name, phase("Compiling"))
            pod = await cluster.start_pod(status["compileJob"])
            await cluster.finish_pod(pod, **pod_end)
            await cluster.finish_job(status["compileJob"], "Failed", "BackoffLimitExceeded", "backoff")
            status = await serving.wait_status(name, phase("Failed"))
            assert status["failure"]["reason"] == reason and text in status["failure"]["message"]
            assert condition(status, "Compiled") == ("False", reason)
            assert serving.deployment(name) is None
        assert len(serving.compile_jobs()) == 2  # a failed compile is not retried in a loop
        # Deleting the failed Job (the status says so) compiles again.
        failed_job = serving.status("bad")["compileJob"]
        assert f"delete Job {failed_job}" in serving.status("bad")["failure"]["message"]
        await cluster._call("delete", f"/apis/batch/v1/namespaces/{NS}/jobs/{failed_job}")
        status = await serving.wait_status("bad", phase("Compiling"))
        assert "failure" not in status and not cluster.job(failed_job).get("status")  # a new Job


async def test_a_lora_change_recompiles_while_the_old_model_serves_then_rolls(cluster: Any,
                                                                              operator_runner: Any) -> None:
    serving = Serving(cluster)
    async with operator_runner():
        await serving.create("alice", DIRECT)
        status = await serving.wait_status("alice", phase("Compiling"))
        old_artifact = await serving.compile_succeeds(status["compileJob"])
        await cluster.wait_for("the Deployment", lambda: serving.deployment("alice"))
        await serving.roll_out("alice")
        await serving.wait_status("alice", phase("Ready"))
        old_template = serving.deployment("alice")["spec"]["template"]

        await serving.patch_spec("alice", {"lora": "s3://loras/alice-v2/pytorch_lora_weights.safetensors",
                                           "replicas": 2})
        status = await serving.wait_status("alice", phase("Compiling"))
        new_job = status["compileJob"]
        assert status["liveArtifact"] == old_artifact and "compiledArtifact" not in status  # not for the new key yet
        # The old model keeps serving: replicas follow the spec, the pod template does not change yet.
        await cluster.wait_for("2 replicas", lambda: serving.deployment("alice")["spec"]["replicas"] == 2)
        assert serving.deployment("alice")["spec"]["template"] == old_template
        assert condition(status, "Available")[0] == "True"

        new_artifact = await serving.compile_succeeds(new_job)
        await cluster.wait_for("the rolling update", lambda: serving.deployment("alice")["spec"]["template"][
            "metadata"]["annotations"]["sdxl.io/compiled-artifact"] == new_artifact)
        deployment = serving.deployment("alice")
        assert deployment["spec"]["strategy"]["rollingUpdate"] == {"maxUnavailable": 0, "maxSurge": 1}
        status = await serving.wait_status("alice", phase("Deploying"))
        assert status["liveArtifact"] == old_artifact  # until the rollout completes
        await serving.roll_out("alice")
        status = await serving.wait_status("alice", phase("Ready"))
        assert status["liveArtifact"] == new_artifact == status["compiledArtifact"]


async def test_two_deployments_with_the_same_model_share_one_compile(cluster: Any, operator_runner: Any) -> None:
    serving = Serving(cluster)
    async with operator_runner():
        await serving.create("one", DIRECT)
        first = await serving.wait_status("one", phase("Compiling"))
        await serving.create("two", {**DIRECT, "replicas": 2, "server": {"maxBatch": 2}})  # serving-only changes
        second = await serving.wait_status("two", phase("Compiling"))
        assert second["compileKey"] == first["compileKey"] and second["compileJob"] == first["compileJob"]
        assert len(serving.compile_jobs()) == 1
        artifact = await serving.compile_succeeds(first["compileJob"])
        for name in ("one", "two"):
            await cluster.wait_for(f"Deployment {name}", lambda n=name: serving.deployment(n))
            await serving.roll_out(name)
            status = await serving.wait_status(name, phase("Ready"))
            assert status["liveArtifact"] == artifact
        # A third one created after the compile finished finds it done: no Job of its own.
        await serving.create("three", DIRECT)
        await cluster.wait_for("Deployment three", lambda: serving.deployment("three"))
        assert len(serving.compile_jobs()) == 1
        # Deployments created at the same moment still start one compile per key.
        await asyncio.gather(*(serving.create(f"burst-{i}", {**DIRECT, "loraScale": 0.5}) for i in range(4)))
        for i in range(4):
            await serving.wait_status(f"burst-{i}", phase("Compiling"))
        assert len(serving.compile_jobs()) == 2


async def test_operator_restart_creates_nothing_twice(cluster: Any, operator_runner: Any) -> None:
    serving = Serving(cluster)
    async with operator_runner():
        await serving.create("alice", {**DIRECT, "autoscaling": {"maxReplicas": 3}})
        status = await serving.wait_status("alice", phase("Compiling"))
    job_uid = cluster.job(status["compileJob"])["metadata"]["uid"]
    await serving.compile_succeeds(status["compileJob"])  # finished while the operator was away
    async with operator_runner():
        await cluster.wait_for("the Deployment", lambda: serving.deployment("alice"))
        await serving.roll_out("alice")
        await serving.wait_status("alice", phase("Ready"))
        deployment_uid = serving.deployment("alice")["metadata"]["uid"]
    async with operator_runner():
        await serving.wait_status("alice", phase("Ready"))
        await serving.roll_out("alice")
        assert [j["metadata"]["uid"] for j in serving.compile_jobs()] == [job_uid]
        assert [d["metadata"]["uid"] for d in cluster.emulator.live_objects("apps/v1/deployments", NS)] == [
            deployment_uid]
        assert len(cluster.emulator.live_objects("v1/services", NS)) == 1
        hpa = serving.hpa("alice")
        assert hpa["spec"]["maxReplicas"] == 3 and "replicas" not in serving.deployment("alice")["spec"]


async def test_deleting_the_finetune_keeps_serving_and_deleting_the_deployment_collects_children(
    cluster: Any, operator_runner: Any, tiny_spec: Any
) -> None:
    serving = Serving(cluster)
    async with operator_runner():
        await cluster.create_finetune("ft", tiny_spec)
        await serving.create("alice", {"fineTune": "ft", "accelerator": "cpu"})
        await succeed_finetune(cluster, "ft")
        status = await serving.wait_status("alice", phase("Compiling"))
        artifact = await serving.compile_succeeds(status["compileJob"])
        await cluster.wait_for("the Deployment", lambda: serving.deployment("alice"))
        await serving.roll_out("alice")
        await serving.wait_status("alice", phase("Ready"))

        await cluster.delete_finetune("ft")
        status = await serving.wait_status("alice", lambda s: condition(s, "FineTuneReady")[1] == "FineTuneNotFound")
        assert status["phase"] == "Ready" and status["compiledArtifact"] == artifact
        assert serving.deployment("alice") is not None
        # The fine-tune's deployments come from Kopf's index of them, never from listing them all.
        assert not handler_requests(cluster, "list", "sdxldeployments")

        await serving.delete("alice")
        await serving.wait_gone("alice")
        assert serving.deployment("alice") is None and serving.service("alice") is None
        assert serving.compile_jobs() == []
        assert cluster.emulator.live_objects("v1/configmaps", NS) == []


async def test_an_invalid_spec_fails_without_children_until_it_is_fixed(cluster: Any, operator_runner: Any) -> None:
    serving = Serving(cluster)
    async with operator_runner():
        await serving.create("bad", {**DIRECT, "neuron": {"height": 512}, "replicas": 500})
        status = await serving.wait_status("bad", phase("Failed"))
        assert status["failure"]["reason"] == "InvalidSpec"
        assert "spec.neuron: only allowed with spec.accelerator: neuron" in status["failure"]["message"]
        assert "spec.replicas: must be between 0 and 100" in status["failure"]["message"]
        assert serving.compile_jobs() == [] and cluster.emulator.live_objects("v1/configmaps", NS) == []
        await serving.patch_spec("bad", {"neuron": None, "replicas": 1})
        status = await serving.wait_status("bad", phase("Compiling"))
        assert "failure" not in status and len(serving.compile_jobs()) == 1


async def test_a_shared_compile_whose_owner_is_deleted_is_started_again_by_the_other(cluster: Any,
                                                                                      operator_runner: Any) -> None:
    serving = Serving(cluster)
    async with operator_runner():
        await serving.create("owner", DIRECT)
        first = await serving.wait_status("owner", phase("Compiling"))
        await serving.create("sharer", DIRECT)
        shared = await serving.wait_status("sharer", phase("Compiling"))
        assert shared["compileJob"] == first["compileJob"] == f"owner-compile-{first['compileKey'][:8]}"
        await serving.delete("owner")  # its Job goes with it, mid-compile
        await cluster.wait_for("the owner's Job to go", lambda: cluster.job(first["compileJob"]) is None)
        status = await serving.wait_status("sharer", lambda s: s.get("compileJob", "").startswith("sharer-compile-"))
        assert status["phase"] == "Compiling" and status["compileKey"] == first["compileKey"]
        await serving.compile_succeeds(status["compileJob"])
        await cluster.wait_for("the Deployment", lambda: serving.deployment("sharer"))


# --- own only what it created; refused children; settled resources -----------------------------------

FOREIGN_LABELS = {"app": "web-frontend"}


async def _post(cluster: Any, path: str, body: dict[str, Any]) -> dict[str, Any]:
    return await cluster._call("post", path, body)  # type: ignore[no-any-return]


async def foreign_service(cluster: Any, name: str) -> dict[str, Any]:
    return await _post(cluster, f"/api/v1/namespaces/{NS}/services", {
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": NS, "labels": FOREIGN_LABELS},
        "spec": {"selector": FOREIGN_LABELS, "ports": [{"port": 80, "targetPort": 80}]}})


async def foreign_deployment(cluster: Any, name: str) -> dict[str, Any]:
    return await _post(cluster, f"/apis/apps/v1/namespaces/{NS}/deployments", {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": NS},
        "spec": {"replicas": 2, "selector": {"matchLabels": FOREIGN_LABELS}, "template": {
            "metadata": {"labels": FOREIGN_LABELS},
            "spec": {"containers": [{"name": "web", "image": "nginx:1.27"}]}}}})


async def foreign_hpa(cluster: Any, name: str) -> dict[str, Any]:
    return await _post(cluster, f"/apis/autoscaling/v2/namespaces/{NS}/horizontalpodautoscalers", {
        "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "metadata": {"name": name, "namespace": NS},
        "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                 "minReplicas": 1, "maxReplicas": 5}})


async def compiled(serving: Serving, name: str) -> dict[str, Any]:
    status = await serving.wait_status(name, lambda s: s.get("compileJob"))
    await serving.compile_succeeds(status["compileJob"])
    return status


def unchanged(now: dict[str, Any] | None, before: dict[str, Any]) -> bool:
    return now is not None and now["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]


async def test_a_foreign_service_is_a_name_conflict_never_a_ready_url(cluster: Any, operator_runner: Any) -> None:
    serving = Serving(cluster)
    before = await foreign_service(cluster, "alice")
    async with operator_runner():
        await serving.create("alice", DIRECT)
        await compiled(serving, "alice")
        status = await serving.wait_status("alice", phase("Failed"))
        assert status["failure"]["reason"] == "NameConflict"
        message = status["failure"]["message"]
        assert "Service team-a/alice" in message and "no controller owner reference" in message
        assert "Delete or rename it" in message
        assert condition(status, "Ready") == ("False", "NameConflict")
        await asyncio.sleep(1.0)  # several status intervals
        assert serving.status("alice")["phase"] == "Failed"
        assert unchanged(serving.service("alice"), before), "the foreign Service was modified"

        # The other application goes: the next pass creates the deployment's own Service.
        await cluster._call("delete", f"/api/v1/namespaces/{NS}/services/alice")
        await cluster.wait_for("our Service", lambda: (serving.service("alice") or {}).get("metadata", {}).get(
            "ownerReferences"))
        await serving.roll_out("alice")
        await serving.wait_status("alice", phase("Ready"))


async def test_a_foreign_deployment_is_left_as_it_was_and_outlives_the_sdxldeployment(
    cluster: Any, operator_runner: Any
) -> None:
    serving = Serving(cluster)
    before = await foreign_deployment(cluster, "alice")
    async with operator_runner():
        await serving.create("alice", DIRECT)  # found before anything is compiled for it
        status = await serving.wait_status("alice", phase("Failed"))
        assert status["failure"]["reason"] == "NameConflict" and "Deployment team-a/alice" in status["failure"]["message"]
        await asyncio.sleep(1.0)
        after = serving.deployment("alice")
        assert unchanged(after, before) and after["spec"]["template"]["spec"]["containers"][0]["image"] == "nginx:1.27"
        await serving.delete("alice")
        await serving.wait_gone("alice")
        assert unchanged(serving.deployment("alice"), before)


async def test_a_child_of_an_older_object_with_the_same_name_is_not_adopted(cluster: Any, operator_runner: Any) -> None:
    serving = Serving(cluster)
    before = await foreign_deployment(cluster, "alice")
    # As `kubectl delete --cascade=orphan` of an older SDXLDeployment alice leaves it (or before the GC ran).
    await cluster._call("patch", f"/apis/apps/v1/namespaces/{NS}/deployments/alice", {"metadata": {
        "ownerReferences": [{"apiVersion": "sdxl.io/v1alpha1", "kind": "SDXLDeployment", "name": "alice",
                             "uid": "0000-older", "controller": True, "blockOwnerDeletion": True}]}},
        "application/merge-patch+json")
    before = serving.deployment("alice")
    async with operator_runner():
        await serving.create("alice", DIRECT)  # found before anything is compiled for it
        status = await serving.wait_status("alice", phase("Failed"))
        assert status["failure"]["reason"] == "NameConflict"
        assert "older SDXLDeployment of the same name (uid 0000-older" in status["failure"]["message"]
        assert unchanged(serving.deployment("alice"), before)


async def test_a_foreign_hpa_is_never_rewritten_nor_deleted(cluster: Any, operator_runner: Any) -> None:
    serving = Serving(cluster)
    before = await foreign_hpa(cluster, "alice")
    async with operator_runner():
        await serving.create("alice", {**DIRECT, "autoscaling": {"maxReplicas": 3}})
        await compiled(serving, "alice")
        status = await serving.wait_status("alice", phase("Failed"))
        assert status["failure"]["reason"] == "NameConflict"
        assert "HorizontalPodAutoscaler team-a/alice" in status["failure"]["message"]
        assert unchanged(serving.hpa("alice"), before)
        # Without spec.autoscaling the foreign HPA is not in the way, and it is not deleted either.
        await serving.patch_spec("alice", {"autoscaling": None})
        await cluster.wait_for("the Deployment with spec.replicas",
                               lambda: "replicas" in (serving.deployment("alice") or {}).get("spec", {}))
        await serving.roll_out("alice")
        await serving.wait_status("alice", phase("Ready"))
        assert unchanged(serving.hpa("alice"), before)


async def test_a_foreign_job_with_the_compile_name_or_key_is_never_read_as_a_compile(
    cluster: Any, operator_runner: Any
) -> None:
    serving = Serving(cluster)
    async with operator_runner():
        await serving.create("probe", DIRECT)
        key = (await serving.wait_status("probe", lambda s: s.get("compileKey")))["compileKey"]
        await serving.delete("probe")
        await cluster.wait_for("the probe's Job to go", lambda: serving.compile_jobs() == [])
        # A finished Job with the key's label and annotation (no SDXLDeployment controls it), and one with
        # the very name alice's compile Job needs.
        for job_name in ("lookalike", f"alice-compile-{key[:8]}"):
            await _post(cluster, f"/apis/batch/v1/namespaces/{NS}/jobs", {
                "apiVersion": "batch/v1", "kind": "Job", "metadata": {
                    "name": job_name, "namespace": NS, "labels": {"sdxl.io/compile-key": key[:63]},
                    "annotations": {"sdxl.io/compile-key": key,
                                    "sdxl.io/compiled-artifact": "s3://elsewhere/compiled/forged"}},
                "spec": {"template": {"spec": {"restartPolicy": "Never",
                                               "containers": [{"name": "c", "image": "busybox"}]}}}})
            await cluster.finish_job(job_name, "Complete")
        await serving.create("alice", DIRECT)
        status = await serving.wait_status("alice", phase("Failed"))
        assert status["failure"]["reason"] == "NameConflict"
        assert f"Job team-a/alice-compile-{key[:8]}" in status["failure"]["message"]
        assert "compiledArtifact" not in status and serving.deployment("alice") is None


async def test_a_child_the_api_server_refuses_fails_with_its_message(cluster: Any, operator_runner: Any) -> None:
    # Stands in for a field the server refuses (e.g. an invalid Secret key in the pod's volume).
    cluster.emulator["post", f"/apis/apps/v1/namespaces/{NS}/deployments"] << 422 << {
        "apiVersion": "v1", "kind": "Status", "status": "Failure", "reason": "Invalid", "code": 422,
        "message": 'Deployment.apps "alice" is invalid: spec.template.spec.volumes[3].secret.items[0].path: '
                   "Invalid value: \"..\": must not contain '..'"}
    serving = Serving(cluster)
    async with operator_runner():
        await serving.create("alice", DIRECT)
        await compiled(serving, "alice")
        status = await serving.wait_status("alice", phase("Failed"))
        assert status["failure"]["reason"] == "Rejected"
        assert "must not contain '..'" in status["failure"]["message"]
        assert condition(status, "Ready") == ("False", "Rejected")


async def test_a_ready_deployment_follows_its_pods_and_no_finalizer_is_held(cluster: Any,
                                                                            operator_runner: Any) -> None:
    serving = Serving(cluster)
    async with operator_runner():
        await serving.create("alice", DIRECT)
        await serving.wait_status("alice", lambda s: s.get("compileJob"))
        assert not serving.obj("alice")["metadata"].get("finalizers")  # deleting it never waits for us
        await compiled(serving, "alice")
        await cluster.wait_for("the Deployment", lambda: serving.deployment("alice"))
        await serving.roll_out("alice")
        status = await serving.wait_status("alice", phase("Ready"))
        # The scale subresource's labelSelectorPath: the server pods' selector.
        assert status["selector"] == ("app.kubernetes.io/instance=alice,app.kubernetes.io/managed-by=sdxl-operator,"
                                      "app.kubernetes.io/name=sdxl-server,sdxl.io/deployment=alice")
        assert not serving.obj("alice")["metadata"].get("finalizers")

        await serving.roll_out("alice", ready=0)  # the server pod is lost
        status = await serving.wait_status("alice", phase("Deploying"))
        assert condition(status, "Available") == ("False", "NoServerReady")
        await serving.roll_out("alice")
        await serving.wait_status("alice", phase("Ready"))
        events = [e for e in cluster.emulator.live_objects("v1/events", NS)
                  if e.get("involvedObject", {}).get("name") == "alice"]
        assert events and {e.get("reportingComponent") for e in events} == {"sdxl-operator"}
        assert all(e.get("reportingInstance") not in (None, "", "dev") for e in events)


async def test_a_finalizer_an_earlier_version_left_is_removed(cluster: Any, operator_runner: Any) -> None:
    body = {"apiVersion": "sdxl.io/v1alpha1", "kind": "SDXLDeployment",
            "metadata": {"name": "old", "namespace": NS, "finalizers": ["sdxl.io/kopf-finalizer"]},
            "spec": copy.deepcopy(DIRECT)}
    await cluster._call("post", f"/apis/sdxl.io/v1alpha1/namespaces/{NS}/sdxldeployments", body)
    serving = Serving(cluster)
    async with operator_runner():
        await cluster.wait_for("the old finalizer to go", lambda: not serving.obj("old")["metadata"].get("finalizers"))
        await serving.wait_status("old", lambda s: s.get("compileJob"))
