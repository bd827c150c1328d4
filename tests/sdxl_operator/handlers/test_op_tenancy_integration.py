"""Tenant isolation and the administrator's limits, with the real operator against the API emulator:
store URIs of another namespace refused, reserved namespaces left untouched, placement keys limited,
image counts capped, one output per run, a namespace's own cloud identity, and the servers'
NetworkPolicy. Fixtures (``cluster``, ``operator_runner``) are in this folder's conftest.py.
"""

from __future__ import annotations

import asyncio
import copy
import json
from typing import Any

import pytest

pytestmark = [pytest.mark.asyncio, pytest.mark.slow]

NS = "team-a"
DEPLOYMENTS = "sdxl.io/v1alpha1/sdxldeployments"
POLICIES = "networking.k8s.io/v1/networkpolicies"
OTHER_TENANT = "s3://sdxl-artifacts/store/finetunes/team-b/bob"
DIRECT: dict[str, Any] = {"lora": "s3://loras/alice/pytorch_lora_weights.safetensors", "baseModel": "builtin:tiny",
                          "accelerator": "cpu", "replicas": 1}


def custom(kind: str, name: str, namespace: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "sdxl.io/v1alpha1", "kind": kind, "metadata": {"name": name, "namespace": namespace},
            "spec": copy.deepcopy(spec)}


async def create_deployment(cluster: Any, name: str, spec: dict[str, Any], namespace: str = NS) -> None:
    await cluster._call("post", f"/apis/sdxl.io/v1alpha1/namespaces/{namespace}/sdxldeployments",
                        custom("SDXLDeployment", name, namespace, spec))


def deployment_status(cluster: Any, name: str, namespace: str = NS) -> dict[str, Any]:
    return dict((cluster.emulator.live_object(DEPLOYMENTS, namespace, name) or {}).get("status") or {})


async def wait_deployment(cluster: Any, name: str, check: Any) -> dict[str, Any]:
    def probe() -> dict[str, Any] | None:
        status = deployment_status(cluster, name)
        return status if status and check(status) else None

    try:
        return await cluster.wait_for(f"status of {name}", probe)  # type: ignore[no-any-return]
    except AssertionError:
        raise AssertionError(f"status of {name}: {json.dumps(deployment_status(cluster, name))}") from None


async def compile_and_serve(cluster: Any, name: str) -> None:
    status = await wait_deployment(cluster, name, lambda s: s.get("compileJob"))
    job = cluster.job(status["compileJob"])
    pod = await cluster.start_pod(status["compileJob"])
    result = {"status": "Succeeded", "artifacts": {"compiled": job["metadata"]["annotations"]["sdxl.io/compiled-artifact"]}}
    await cluster.finish_pod(pod, exit_code=0, message=json.dumps(result))
    await cluster.finish_job(status["compileJob"], "Complete")


def failed_with(status: dict[str, Any]) -> str:
    assert status["phase"] == "Failed", status
    assert status["failure"]["reason"] == "InvalidSpec", status
    return str(status["failure"]["message"])


async def test_uris_in_another_namespaces_prefix_are_refused_and_allowed_prefixes_accepted(
        cluster: Any, operator_runner: Any, tiny_spec: Any) -> None:
    async with operator_runner(tenancy_allowed_prefixes={NS: ("s3://sdxl-artifacts/shared/",)}):
        for field in ("output", "instanceImages", "baseModel"):
            await cluster.create_finetune(f"steal-{field.lower()}", {**tiny_spec, field: OTHER_TENANT})
        await create_deployment(cluster, "steal-lora", {**DIRECT, "lora": f"{OTHER_TENANT}/lora/"})
        await cluster.create_finetune("shared", {**tiny_spec, "instanceImages": "s3://sdxl-artifacts/shared/photos"})

        for field in ("output", "instanceImages", "baseModel"):
            status = await cluster.wait_for_status(f"steal-{field.lower()}", lambda s: s.get("phase") == "Failed")
            message = failed_with(status)
            assert message.startswith(f"spec.{field}: {OTHER_TENANT} is in the operator's artifact store")
            assert "s3://sdxl-artifacts/store/finetunes/team-a/" in message and "tenancy.allowedPrefixes" in message
        message = failed_with(await wait_deployment(cluster, "steal-lora", lambda s: s.get("phase") == "Failed"))
        assert message.startswith(f"spec.lora: {OTHER_TENANT}/lora/ is in the operator's artifact store")

        await cluster.wait_for("the allowed run's Job", lambda: cluster.job("shared-train"))
        assert [job["metadata"]["name"] for job in cluster.jobs()] == ["shared-train"]


async def test_a_resource_in_a_reserved_namespace_gets_no_job_no_status_and_no_mark(
        cluster: Any, operator_runner: Any, tiny_spec: Any) -> None:
    async with operator_runner(reserved_namespaces=("kube-*", "platform-system")):
        for namespace in ("kube-system", "platform-system"):
            await cluster._call("post", f"/apis/sdxl.io/v1alpha1/namespaces/{namespace}/sdxlfinetunes",
                                custom("SDXLFineTune", "sneaky", namespace, tiny_spec))
            await create_deployment(cluster, "sneaky", DIRECT, namespace)
        # The same resources in a tenant's namespace, created after them, are served.
        await cluster.create_finetune("ft", tiny_spec)
        await create_deployment(cluster, "dep", DIRECT)
        await cluster.wait_for("the tenant's Job", lambda: cluster.job("ft-train"))
        await wait_deployment(cluster, "dep", lambda s: s.get("compileJob"))
        await asyncio.sleep(1.0)  # several status intervals
    for namespace in ("kube-system", "platform-system"):
        for resource in ("sdxl.io/v1alpha1/sdxlfinetunes", DEPLOYMENTS):
            obj = cluster.emulator.live_object(resource, namespace, "sneaky")
            assert obj is not None
            assert not obj.get("status"), f"{resource} in {namespace} got a status: {obj.get('status')}"
            meta = obj["metadata"]
            assert not meta.get("finalizers"), meta
            assert not [key for key in meta.get("annotations") or {} if key.startswith("sdxl.io/")], meta
        for kind in ("batch/v1/jobs", "v1/configmaps", "v1/serviceaccounts", "apps/v1/deployments"):
            assert cluster.emulator.live_objects(kind, namespace) == [], f"{kind} created in {namespace}"


async def test_placement_and_photo_limits_refuse_the_spec_naming_what_is_wrong(
        cluster: Any, operator_runner: Any, tiny_spec: Any) -> None:
    control_plane = {"key": "node-role.kubernetes.io/control-plane", "operator": "Exists", "effect": "NoSchedule"}
    async with operator_runner():
        await cluster.create_finetune("on-control-plane", {
            **tiny_spec, "resources": {**tiny_spec["resources"], "tolerations": [control_plane]}})
        await create_deployment(cluster, "pinned", {**DIRECT, "resources": {
            "nodeSelector": {"node-role.kubernetes.io/control-plane": ""}}})
        await cluster.create_finetune("many-classes", {
            **tiny_spec, "classPrompt": "a photo of a person",
            "priorPreservation": {"enabled": True, "numClassImages": 1001}})
        await cluster.create_finetune("gpu-pool", {
            **tiny_spec, "resources": {**tiny_spec["resources"], "tolerations": [
                {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]}})

        message = failed_with(await cluster.wait_for_status("on-control-plane", lambda s: s.get("phase") == "Failed"))
        assert message.startswith("spec.resources.tolerations[0]: toleration key node-role.kubernetes.io/control-plane "
                                  "is not allowed in this cluster")
        message = failed_with(await wait_deployment(cluster, "pinned", lambda s: s.get("phase") == "Failed"))
        assert "spec.resources.nodeSelector.node-role.kubernetes.io/control-plane" in message
        message = failed_with(await cluster.wait_for_status("many-classes", lambda s: s.get("phase") == "Failed"))
        assert message.startswith("spec.priorPreservation.numClassImages: at most 1000 in this cluster, got 1001")

        job = await cluster.wait_for("the allowed run's Job", lambda: cluster.job("gpu-pool-train"))
        assert [job["metadata"]["name"] for job in cluster.jobs()] == ["gpu-pool-train"]
        # The trainer gets the cluster's photo limit: only it can count the photos in the folder.
        args = job["spec"]["template"]["spec"]["containers"][0]["args"]
        assert args[args.index("--max-instance-images") + 1] == "1000"


async def test_a_second_finetune_naming_a_running_runs_output_is_refused(
        cluster: Any, operator_runner: Any, tiny_spec: Any) -> None:
    output = "s3://sdxl-artifacts/store/finetunes/team-a/alice"
    async with operator_runner():
        await cluster.create_finetune("first", {**tiny_spec, "output": output})
        await cluster.wait_for("the first Job", lambda: cluster.job("first-train"))
        await cluster.create_finetune("second", {**tiny_spec, "output": output + "/"})
        message = failed_with(await cluster.wait_for_status("second", lambda s: s.get("phase") == "Failed"))
        assert message.startswith(f"spec.output: {output}/ is already the output of SDXLFineTune first")
        assert cluster.job("second-train") is None

        # Once the first run failed, its output is free for a new run (which resumes its checkpoints).
        pod = await cluster.start_pod("first-train")
        await cluster.finish_pod(pod, exit_code=2, message=json.dumps(
            {"status": "Failed", "reason": "InvalidInput", "message": "too few photos"}))
        await cluster.finish_job("first-train", "Failed", "PodFailurePolicy")
        await cluster.wait_for_status("first", lambda s: s.get("phase") == "Failed")
        await cluster.create_finetune("third", {**tiny_spec, "output": output})
        await cluster.wait_for("the third Job", lambda: cluster.job("third-train"))


async def test_the_workload_account_gets_its_namespaces_own_role(cluster: Any, operator_runner: Any,
                                                                 tiny_spec: Any) -> None:
    own = "arn:aws:iam::123456789012:role/sdxl-team-a"
    async with operator_runner(
            workload_service_account="sdxl-workload",
            workload_service_account_annotations={"eks.amazonaws.com/role-arn": "arn:aws:iam::1:role/shared"},
            workload_service_account_namespace_annotations={NS: {"eks.amazonaws.com/role-arn": own}}):
        await cluster.create_finetune("ft", tiny_spec)
        await cluster.wait_for("the Job", lambda: cluster.job("ft-train"))
        account = cluster.emulator.live_object("v1/serviceaccounts", NS, "sdxl-workload")
        assert account["metadata"]["annotations"] == {"eks.amazonaws.com/role-arn": own}


async def test_the_servers_get_a_network_policy_for_the_namespace_and_the_listed_sources(
        cluster: Any, operator_runner: Any) -> None:
    ingress = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}}}
    async with operator_runner(network_policy_sources=(ingress,)):
        await create_deployment(cluster, "alice", DIRECT)
        await compile_and_serve(cluster, "alice")
        policy = await cluster.wait_for("the NetworkPolicy", lambda: cluster.emulator.live_object(POLICIES, NS, "alice"))
        assert policy["metadata"]["ownerReferences"][0]["kind"] == "SDXLDeployment"
        server = cluster.emulator.live_object("apps/v1/deployments", NS, "alice")
        pod_labels = server["spec"]["template"]["metadata"]["labels"]
        assert policy["spec"]["podSelector"]["matchLabels"].items() <= pod_labels.items()
        assert policy["spec"]["ingress"] == [{"from": [{"podSelector": {}}, ingress],
                                              "ports": [{"protocol": "TCP", "port": 8080}]}]
    # Turned off by the administrator: the deployment's own policy goes.
    async with operator_runner(network_policy=False):
        await cluster._call("patch", f"/apis/sdxl.io/v1alpha1/namespaces/{NS}/sdxldeployments/alice",
                            {"spec": {"replicas": 2}}, "application/merge-patch+json")
        await cluster.wait_for("the policy to go", lambda: cluster.emulator.live_object(POLICIES, NS, "alice") is None)


async def test_a_foreign_network_policy_of_that_name_is_a_name_conflict(cluster: Any, operator_runner: Any) -> None:
    foreign = {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
               "metadata": {"name": "alice", "namespace": NS},
               "spec": {"podSelector": {"matchLabels": {"app": "payments"}}, "policyTypes": ["Ingress"]}}
    before = await cluster._call("post", f"/apis/networking.k8s.io/v1/namespaces/{NS}/networkpolicies", foreign)
    async with operator_runner():
        await create_deployment(cluster, "alice", DIRECT)
        await compile_and_serve(cluster, "alice")
        status = await wait_deployment(cluster, "alice", lambda s: s.get("phase") == "Failed")
        assert status["failure"]["reason"] == "NameConflict"
        assert "NetworkPolicy team-a/alice" in status["failure"]["message"]
    now = cluster.emulator.live_object(POLICIES, NS, "alice")
    assert now["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]
    assert now["spec"] == foreign["spec"]


async def test_a_started_run_is_not_failed_by_a_limit_tightened_later(cluster: Any, operator_runner: Any,
                                                                       tiny_spec: Any) -> None:
    gpu = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
    async with operator_runner():
        await cluster.create_finetune("ft", {**tiny_spec, "resources": {**tiny_spec["resources"], "tolerations": [gpu]}})
        await cluster.wait_for("the Job", lambda: cluster.job("ft-train"))
        await cluster.run_pod(await cluster.start_pod("ft-train"))
        await cluster.wait_for_status("ft", lambda s: s.get("phase") == "Training")
    # The administrator no longer allows the key; the operator restarts while the Job runs on.
    async with operator_runner(allowed_toleration_keys=()):
        await cluster.create_finetune("later", {**tiny_spec, "resources": {**tiny_spec["resources"],
                                                                           "tolerations": [gpu]}})
        failed_with(await cluster.wait_for_status("later", lambda s: s.get("phase") == "Failed"))
        await asyncio.sleep(1.0)
        assert cluster.status("ft")["phase"] == "Training"
