"""A default cluster-wide install used the way platform teams use it, on the real control plane: work in
namespaces other than the operator's, a ResourceQuota that forbids the pods, other applications'
objects in the way, and scaling an SDXLDeployment by hand and by an HPA.

The chart's RBAC is the operator's (it runs as the chart's ServiceAccount), Kubernetes' own Job,
Deployment, HPA and quota machinery answer, and nothing is mocked (see tests/e2e/conftest.py).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from sdxl_sandbox.api_client import KubeClient
from sdxl_sandbox.sandbox import DEPLOYMENTS, FINETUNES, Sandbox

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.asyncio(loop_scope="session")]

Kubectl = Callable[..., Any]
WORKLOAD_ACCOUNT = "sdxl-operator-workload"
MANAGED_BY = {"app.kubernetes.io/managed-by": "sdxl-operator"}


def client_of(sandbox: Sandbox) -> KubeClient:
    assert sandbox.client is not None, "the sandbox is not started"
    return sandbox.client


def failure_reason(status: dict[str, Any]) -> str | None:
    return (status.get("failure") or {}).get("reason")


async def wait_for_reason(sandbox: Sandbox, resource: str, namespace: str, name: str, reason: str,
                          timeout: float) -> dict[str, Any]:
    """The status once ``failure.reason`` or the Ready condition's reason is ``reason``."""

    async def check() -> dict[str, Any] | None:
        status = await sandbox.status(resource, namespace, name)
        ready = next((c for c in status.get("conditions") or [] if c.get("type") == "Ready"), {})
        return status if reason in (failure_reason(status), ready.get("reason")) else None

    try:
        return await sandbox.wait_for(f"{name} to report {reason}", check, timeout)
    except TimeoutError as exc:
        raise TimeoutError(f"{exc}; last status: {await sandbox.status(resource, namespace, name)}") from None


async def test_the_workload_identity_exists_in_every_namespace_that_runs_work(
        sandbox: Sandbox, make_finetune: Any) -> None:
    # The chart made the workload ServiceAccount in its own namespace only; the operator makes it
    # wherever a resource runs, so pods can be created there at all.
    for namespace in ("tenant-one", "tenant-two"):
        await sandbox.ensure_namespace(namespace)
        assert await sandbox.get("v1/serviceaccounts", namespace, WORKLOAD_ACCOUNT) is None
        await sandbox.apply(make_finetune("identity", namespace))
    for namespace in ("tenant-one", "tenant-two"):
        done = await sandbox.wait_for_phase(FINETUNES, namespace, "identity", "Succeeded", 300)
        assert done["progress"]["step"] == 6
        account = await sandbox.get("v1/serviceaccounts", namespace, WORKLOAD_ACCOUNT)
        assert account is not None
        assert account["metadata"]["labels"].items() >= MANAGED_BY.items()
        assert account.get("automountServiceAccountToken") is False


async def test_a_quota_that_forbids_the_pod_is_a_reason_within_the_grace_period(
        sandbox: Sandbox, make_finetune: Any) -> None:
    namespace = "tenant-quota"
    await sandbox.ensure_namespace(namespace)
    await client_of(sandbox).create({
        "apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": "no-gpus", "namespace": namespace},
        "spec": {"hard": {"requests.nvidia.com/gpu": "0"}}})
    await sandbox.apply(make_finetune("over-quota", namespace))
    # The Job controller cannot create the pod; the resource says so in the API server's words.
    status = await wait_for_reason(sandbox, FINETUNES, namespace, "over-quota", "PodCreationFailed", 60)
    message = (status.get("failure") or {}).get("message") or next(
        c["message"] for c in status["conditions"] if c.get("reason") == "PodCreationFailed")
    assert "exceeded quota: no-gpus" in message, message
    assert "requests.nvidia.com/gpu" in message, message


async def test_foreign_objects_in_the_way_are_left_alone_and_named(
        sandbox: Sandbox, make_finetune: Any, make_deployment: Any) -> None:
    namespace = "tenant-conflict"
    await sandbox.ensure_namespace(namespace)
    client = client_of(sandbox)
    foreign_labels = {"app": "web"}
    pod_template = {"metadata": {"labels": foreign_labels},
                    "spec": {"containers": [{"name": "web", "image": "nginx:1.27", "command": ["true"]}],
                             "restartPolicy": "Never"}}
    # Another application's objects, with the names our children would take.
    foreign = [
        {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "clash-train", "namespace": namespace},
         "spec": {"suspend": True, "template": pod_template}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "clash-svc", "namespace": namespace},
         "spec": {"selector": foreign_labels, "ports": [{"port": 80}]}},
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "clash-dep", "namespace": namespace},
         "spec": {"replicas": 0, "selector": {"matchLabels": foreign_labels},
                  "template": {**pod_template, "spec": {**pod_template["spec"], "restartPolicy": "Always"}}}},
        {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
         "metadata": {"name": "clash-hpa", "namespace": namespace},
         "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "clash-dep"},
                  "minReplicas": 1, "maxReplicas": 3}},
    ]
    originals = {}
    for obj in foreign:
        created = await client.create(obj)
        originals[(obj["kind"], obj["metadata"]["name"])] = created

    await sandbox.apply(make_finetune("clash", namespace))  # its Job would be clash-train
    await sandbox.apply(make_finetune("tenant-ft", namespace))
    for name in ("clash-svc", "clash-dep", "clash-hpa"):
        deployment = make_deployment(name, "tenant-ft", namespace)
        if name == "clash-hpa":
            deployment["spec"]["autoscaling"] = {"minReplicas": 1, "maxReplicas": 2,
                                                 "targetCPUUtilizationPercentage": 70}
        await sandbox.apply(deployment)

    status = await wait_for_reason(sandbox, FINETUNES, namespace, "clash", "NameConflict", 120)
    assert "clash-train" in status["failure"]["message"]
    for name, kind in (("clash-svc", "Service"), ("clash-dep", "Deployment"), ("clash-hpa", "HorizontalPodAutoscaler")):
        status = await wait_for_reason(sandbox, DEPLOYMENTS, namespace, name, "NameConflict", 400)
        message = (status.get("failure") or {}).get("message") or ""
        assert kind in message and name in message, message
        assert status.get("phase") != "Ready"

    # Exactly as they were: never patched, scaled, adopted or deleted.
    for obj in foreign:
        kind, name = obj["kind"], obj["metadata"]["name"]
        resource = {"Job": "batch/v1/jobs", "Service": "v1/services", "Deployment": "apps/v1/deployments",
                    "HorizontalPodAutoscaler": "autoscaling/v2/horizontalpodautoscalers"}[kind]
        now = await sandbox.get(resource, namespace, name)
        assert now is not None, f"{kind} {name} was deleted"
        before = originals[(kind, name)]
        assert not now["metadata"].get("ownerReferences"), f"{kind} {name} was adopted"
        assert now["spec"] == before["spec"], f"{kind} {name} was changed"
        assert now["metadata"].get("labels") == before["metadata"].get("labels"), f"{kind} {name}: labels changed"
        # Kubernetes' own controllers write these objects' status (and a Deployment's revision
        # annotation); nobody else touched them.
        managers = {entry["manager"] for entry in now["metadata"].get("managedFields") or []}
        creators = {entry["manager"] for entry in before["metadata"].get("managedFields") or []}
        assert managers <= creators | {"kube-controller-manager"}, f"{kind} {name} written by {managers - creators}"

    # Deleting our resources leaves the foreign objects in place.
    for name in ("clash-svc", "clash-dep", "clash-hpa"):
        await sandbox.delete(make_deployment(name, "tenant-ft", namespace))
    await sandbox.delete(make_finetune("clash", namespace))

    async def gone() -> bool:
        return all([await sandbox.get(DEPLOYMENTS, namespace, n) is None for n in ("clash-svc", "clash-dep", "clash-hpa")])

    await sandbox.wait_for("the SDXLDeployments to be deleted", gone, 60)
    assert await sandbox.get("apps/v1/deployments", namespace, "clash-dep") is not None
    assert await sandbox.get("v1/services", namespace, "clash-svc") is not None


async def test_kubectl_scale_and_an_hpa_target_an_sdxldeployment(
        sandbox: Sandbox, kubectl: Kubectl, make_finetune: Any, make_deployment: Any) -> None:
    namespace = "tenant-scale"
    await sandbox.ensure_namespace(namespace)
    await sandbox.apply(make_finetune("scale-ft", namespace))
    await sandbox.apply(make_deployment("scaled", "scale-ft", namespace))
    await sandbox.wait_for_phase(DEPLOYMENTS, namespace, "scaled", "Ready", 600)

    await kubectl("scale", "-n", namespace, "sdxldeployment/scaled", "--replicas=2")

    async def two_ready() -> dict[str, Any] | None:
        status = await sandbox.status(DEPLOYMENTS, namespace, "scaled")
        return status if status.get("readyReplicas") == 2 and status.get("phase") == "Ready" else None

    status = await sandbox.wait_for("two ready replicas", two_ready, 300)
    assert status["selector"]  # what an HPA and KEDA read through the scale subresource
    child = await sandbox.get("apps/v1/deployments", namespace, "scaled")
    assert child is not None and child["spec"]["replicas"] == 2

    # An HPA (what KEDA creates too) targets the SDXLDeployment itself: the HPA controller reads its
    # scale subresource, selector included.
    await client_of(sandbox).create({
        "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "external-scaler", "namespace": namespace},
        "spec": {"scaleTargetRef": {"apiVersion": "sdxl.io/v1alpha1", "kind": "SDXLDeployment", "name": "scaled"},
                 "minReplicas": 1, "maxReplicas": 3,
                 "metrics": [{"type": "Resource", "resource": {
                     "name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}}}]}})

    async def read_the_scale() -> dict[str, Any] | None:
        hpa = await sandbox.get("autoscaling/v2/horizontalpodautoscalers", namespace, "external-scaler")
        conditions = {c["type"]: c for c in ((hpa or {}).get("status") or {}).get("conditions") or []}
        able = conditions.get("AbleToScale")
        return hpa if able is not None and able["status"] == "True" else None

    hpa = await sandbox.wait_for("the HPA to read the SDXLDeployment's scale", read_the_scale, 120)
    assert hpa["status"]["currentReplicas"] == 2
    # No metrics server runs here, so ScalingActive is False for want of CPU metrics, not for the target.
    active = next(c for c in hpa["status"]["conditions"] if c["type"] == "ScalingActive")
    assert "selector" not in active.get("message", "").lower(), active

    # While spec.autoscaling is set the operator's own HPA decides; scaling by hand is refused, not ignored.
    await kubectl("patch", "-n", namespace, "sdxldeployment/scaled", "--type=merge", "-p",
                  '{"spec": {"autoscaling": {"minReplicas": 1, "maxReplicas": 3}}}')
    refused = await kubectl("scale", "-n", namespace, "sdxldeployment/scaled", "--replicas=3", check=False)
    assert refused.returncode != 0 and "autoscaling" in refused.stderr, refused.stderr

    await sandbox.delete(make_deployment("scaled", "scale-ft", namespace))
