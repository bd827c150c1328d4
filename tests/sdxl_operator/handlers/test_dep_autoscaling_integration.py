"""Autoscaling an SDXLDeployment on the server's queue, run for real against the API emulator over HTTP.

The operator makes a HorizontalPodAutoscaler with a Pods metric, or (KEDA on in its settings) a KEDA
ScaledObject; switching the setting replaces one with the other, and a cluster without KEDA's CRD
fails the deployment with a message saying what to install. The emulator stands in for KEDA's CRD
by declaring the ``keda.sh/v1alpha1`` resource (no PyPI package ships KEDA's CRD manifest, so the
real control plane of the end-to-end tests checks only the HPA); nothing here runs KEDA itself.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import kmock
import pytest

pytestmark = [pytest.mark.asyncio, pytest.mark.slow]

NS = "team-a"
PROMETHEUS = "http://prometheus.monitoring.svc:9090"
KEDA = {"keda": True, "keda_prometheus_address": PROMETHEUS}
HPAS = "autoscaling/v2/horizontalpodautoscalers"
SCALED_OBJECTS = "keda.sh/v1alpha1/scaledobjects"
QUEUE = {"minReplicas": 1, "maxReplicas": 4, "metric": "queueDepth", "target": 2}
SPEC: dict[str, Any] = {"lora": "s3://loras/alice/pytorch_lora_weights.safetensors", "baseModel": "builtin:tiny",
                        "accelerator": "cpu", "replicas": 1, "autoscaling": QUEUE}


def declare_keda(cluster: Any) -> None:
    """KEDA's CRD installed: the emulator serves ScaledObjects."""
    cluster.emulator.resources[SCALED_OBJECTS] = kmock.ResourceInfo(
        kind="ScaledObject", singular="scaledobject", namespaced=True,
        verbs={"get", "list", "watch", "create", "patch", "update", "delete"})


def without_keda(cluster: Any, name: str) -> None:
    """KEDA's CRD not installed: the API server answers 404 for its resource path, as a real one does
    (the emulator would store an object of any resource)."""
    not_served = {"apiVersion": "v1", "kind": "Status", "status": "Failure", "code": 404, "reason": "NotFound",
                  "message": "the server could not find the requested resource"}
    collection = f"/apis/keda.sh/v1alpha1/namespaces/{NS}/scaledobjects"
    cluster.emulator[f"post {collection}"] << 404 << not_served
    for method in ("get", "patch", "delete"):
        cluster.emulator[f"{method} {collection}/{name}"] << 404 << not_served


class Autoscaled:
    """The user of one SDXLDeployment and the controllers Kubernetes would run for it."""

    def __init__(self, cluster: Any, name: str = "alice") -> None:
        self.cluster, self.name = cluster, name
        self.path = f"/apis/sdxl.io/v1alpha1/namespaces/{NS}/sdxldeployments"

    async def create(self, spec: dict[str, Any]) -> None:
        await self.cluster._call("post", self.path, {
            "apiVersion": "sdxl.io/v1alpha1", "kind": "SDXLDeployment",
            "metadata": {"name": self.name, "namespace": NS}, "spec": copy.deepcopy(spec)})

    async def patch_spec(self, spec: dict[str, Any]) -> None:
        await self.cluster._call("patch", f"{self.path}/{self.name}", {"spec": spec}, "application/merge-patch+json")

    def status(self) -> dict[str, Any]:
        found = self.cluster.emulator.live_object("sdxl.io/v1alpha1/sdxldeployments", NS, self.name) or {}
        return dict(found.get("status") or {})

    def child(self, resource: str) -> dict[str, Any] | None:
        return self.cluster.emulator.live_object(resource, NS, self.name)  # type: ignore[no-any-return]

    async def wait_status(self, check: Any, timeout: float = 15.0) -> dict[str, Any]:
        try:
            return await self.cluster.wait_for(  # type: ignore[no-any-return]
                "status", lambda: self.status() if check(self.status()) else None, timeout)
        except AssertionError:
            raise AssertionError(f"status never matched; last: {json.dumps(self.status())}") from None

    async def compiled(self) -> None:
        """Play the compile Job's pod and the Job controller: the model is ready to serve."""
        job_name = (await self.wait_status(lambda s: s.get("compileJob")))["compileJob"]
        job = self.cluster.job(job_name)
        annotations = job["metadata"]["annotations"]
        pod = await self.cluster.start_pod(job_name)
        result = {"status": "Succeeded", "artifacts": {"compiled": annotations["sdxl.io/compiled-artifact"]},
                  "metrics": {"key": annotations["sdxl.io/compile-key"], "cacheHit": False}}
        await self.cluster.finish_pod(pod, exit_code=0, message=json.dumps(result))
        await self.cluster.finish_job(job_name, "Complete")
        await self.cluster.wait_for("the Deployment", lambda: self.child("apps/v1/deployments"))


def pods_metric(hpa: dict[str, Any] | None) -> dict[str, Any]:
    assert hpa is not None
    (metric,) = hpa["spec"]["metrics"]
    assert metric["type"] == "Pods"
    return metric["pods"]  # type: ignore[no-any-return]


async def test_queue_depth_hpa_is_created_and_follows_the_spec(cluster: Any, operator_runner: Any) -> None:
    dep = Autoscaled(cluster)
    async with operator_runner():
        await dep.create(SPEC)
        await dep.compiled()
        await cluster.wait_for("the HPA", lambda: dep.child(HPAS))
        assert pods_metric(dep.child(HPAS)) == {"metric": {"name": "sdxl_queue_depth"},
                                                "target": {"type": "AverageValue", "averageValue": "2"}}
        assert "replicas" not in dep.child("apps/v1/deployments")["spec"]  # the HPA owns the count
        assert dep.child(SCALED_OBJECTS) is None

        await dep.patch_spec({"autoscaling": {"metric": "inFlight", "target": 0.5, "maxReplicas": 6}})
        await cluster.wait_for("the HPA on in-flight requests",
                               lambda: pods_metric(dep.child(HPAS))["metric"]["name"] == "sdxl_requests_in_flight")
        hpa = dep.child(HPAS)
        assert hpa is not None and hpa["spec"]["maxReplicas"] == 6
        assert pods_metric(hpa)["target"] == {"type": "AverageValue", "averageValue": "500m"}


async def test_keda_setting_makes_a_scaled_object_and_switching_deletes_the_other_kind(
    cluster: Any, operator_runner: Any
) -> None:
    declare_keda(cluster)
    dep = Autoscaled(cluster)
    async with operator_runner(**KEDA):
        await dep.create(SPEC)
        await dep.compiled()
        await cluster.wait_for("the ScaledObject", lambda: dep.child(SCALED_OBJECTS))
        scaled = dep.child(SCALED_OBJECTS)
        assert scaled is not None and dep.child(HPAS) is None
        assert scaled["metadata"]["ownerReferences"][0]["kind"] == "SDXLDeployment"
        assert scaled["spec"]["triggers"] == [{"type": "prometheus", "metricType": "AverageValue", "metadata": {
            "serverAddress": PROMETHEUS, "query": f'sum(sdxl_queue_depth{{namespace="{NS}",service="alice"}})',
            "threshold": "2"}}]
        await dep.patch_spec({"autoscaling": {"target": 3}})
        await cluster.wait_for("the new threshold", lambda: (dep.child(SCALED_OBJECTS) or {}).get("spec", {}).get(
            "triggers", [{}])[0].get("metadata", {}).get("threshold") == "3")

    # The chart switched KEDA off: on restart the ScaledObject goes and an HPA takes over.
    async with operator_runner():
        await cluster.wait_for("the HPA", lambda: dep.child(HPAS))
        await cluster.wait_for("the ScaledObject to go", lambda: dep.child(SCALED_OBJECTS) is None)
        assert pods_metric(dep.child(HPAS))["target"]["averageValue"] == "3"

    # And back on: the HPA goes, a ScaledObject again.
    async with operator_runner(**KEDA):
        await cluster.wait_for("the ScaledObject", lambda: dep.child(SCALED_OBJECTS))
        await cluster.wait_for("the HPA to go", lambda: dep.child(HPAS) is None)

        # Without spec.autoscaling there is no autoscaler of either kind, and the spec's replicas hold.
        await dep.patch_spec({"autoscaling": None, "replicas": 2})
        await cluster.wait_for("the ScaledObject to go", lambda: dep.child(SCALED_OBJECTS) is None)
        await cluster.wait_for("spec.replicas", lambda: dep.child("apps/v1/deployments")["spec"].get("replicas") == 2)
        assert dep.child(HPAS) is None


async def test_a_foreign_scaled_object_is_a_conflict_and_left_alone(cluster: Any, operator_runner: Any) -> None:
    declare_keda(cluster)
    foreign = await cluster._call("post", f"/apis/keda.sh/v1alpha1/namespaces/{NS}/scaledobjects", {
        "apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject", "metadata": {"name": "alice", "namespace": NS},
        "spec": {"scaleTargetRef": {"name": "web"}, "triggers": [{"type": "cpu", "metadata": {"value": "50"}}]}})
    dep = Autoscaled(cluster)
    async with operator_runner(**KEDA):
        await dep.create(SPEC)
        await dep.compiled()
        status = await dep.wait_status(lambda s: s.get("phase") == "Failed")
        assert status["failure"]["reason"] == "NameConflict"
        assert "ScaledObject team-a/alice" in status["failure"]["message"]
        assert dep.child(SCALED_OBJECTS)["metadata"]["resourceVersion"] == foreign["metadata"]["resourceVersion"]


async def test_keda_on_without_its_crd_fails_saying_what_to_install(cluster: Any, operator_runner: Any) -> None:
    without_keda(cluster, "alice")
    dep = Autoscaled(cluster)
    async with operator_runner(**KEDA):
        await dep.create(SPEC)
        await dep.compiled()
        status = await dep.wait_status(lambda s: s.get("phase") == "Failed")
        assert status["failure"]["reason"] == "Rejected"
        message = status["failure"]["message"]
        assert "does not serve keda.sh/v1alpha1 ScaledObjects" in message and "install KEDA" in message
        assert "keda.enabled=false" in message
        assert dep.child(HPAS) is None
