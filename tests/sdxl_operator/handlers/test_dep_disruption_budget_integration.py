"""The PodDisruptionBudget of an SDXLDeployment's server pods, run for real against the API emulator.

Created with the second replica (or autoscaling above one), deleted when one replica is left, back
when autoscaling allows more; another application's budget of that name is never touched. The
fixtures (``cluster``, ``operator_runner``) are this folder's conftest.py; the test plays the compile.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

pytestmark = [pytest.mark.asyncio, pytest.mark.slow]

NS = "team-a"
DEPLOYMENTS = "sdxl.io/v1alpha1/sdxldeployments"
BUDGETS = "policy/v1/poddisruptionbudgets"
DIRECT: dict[str, Any] = {"lora": "s3://loras/alice/pytorch_lora_weights.safetensors", "baseModel": "builtin:tiny",
                          "accelerator": "cpu", "replicas": 2}


async def _create(cluster: Any, name: str, spec: dict[str, Any]) -> None:
    body = {"apiVersion": "sdxl.io/v1alpha1", "kind": "SDXLDeployment", "metadata": {"name": name, "namespace": NS},
            "spec": spec}
    await cluster._call("post", f"/apis/sdxl.io/v1alpha1/namespaces/{NS}/sdxldeployments", body)


async def _patch_spec(cluster: Any, name: str, spec: dict[str, Any]) -> None:
    await cluster._call("patch", f"/apis/sdxl.io/v1alpha1/namespaces/{NS}/sdxldeployments/{name}",
                        {"spec": spec}, "application/merge-patch+json")


async def _compiled(cluster: Any, name: str) -> None:
    """Play the compile Job of ``name`` to success."""
    def compile_job() -> str | None:
        status = (cluster.emulator.live_object(DEPLOYMENTS, NS, name) or {}).get("status") or {}
        return status.get("compileJob")

    job_name = await cluster.wait_for(f"the compile Job of {name}", compile_job)
    job = cluster.job(job_name)
    annotations = job["metadata"]["annotations"]
    pod = await cluster.start_pod(job_name)
    result = {"status": "Succeeded", "artifacts": {"compiled": annotations["sdxl.io/compiled-artifact"]},
              "metrics": {"key": annotations["sdxl.io/compile-key"], "cacheHit": False}}
    await cluster.finish_pod(pod, exit_code=0, message=json.dumps(result))
    await cluster.finish_job(job_name, "Complete")


def _budget(cluster: Any, name: str) -> dict[str, Any] | None:
    found: dict[str, Any] | None = cluster.emulator.live_object(BUDGETS, NS, name)
    return found


async def test_the_budget_follows_the_replicas(cluster: Any, operator_runner: Any) -> None:
    async with operator_runner():
        await _create(cluster, "alice", DIRECT)
        await _compiled(cluster, "alice")
        budget = await cluster.wait_for("the PodDisruptionBudget", lambda: _budget(cluster, "alice"))
        deployment = cluster.emulator.live_object("apps/v1/deployments", NS, "alice")
        assert budget["spec"] == {"maxUnavailable": 1, "selector": deployment["spec"]["selector"],
                                  "unhealthyPodEvictionPolicy": "AlwaysAllow"}
        [owner] = budget["metadata"]["ownerReferences"]
        assert (owner["kind"], owner["name"], owner["controller"]) == ("SDXLDeployment", "alice", True)

        await _patch_spec(cluster, "alice", {"replicas": 1})
        await cluster.wait_for("the budget gone with the second replica", lambda: _budget(cluster, "alice") is None)

        await _patch_spec(cluster, "alice", {"autoscaling": {"maxReplicas": 3}})
        await cluster.wait_for("the budget back for autoscaling", lambda: _budget(cluster, "alice"))


async def test_another_applications_budget_is_left_alone(cluster: Any, operator_runner: Any) -> None:
    foreign = {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": "bob", "namespace": NS},
               "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "web"}}}}
    await cluster._call("post", f"/apis/policy/v1/namespaces/{NS}/poddisruptionbudgets", foreign)
    before = _budget(cluster, "bob")
    assert before is not None
    async with operator_runner():
        await _create(cluster, "bob", {**DIRECT, "replicas": 1})
        await _compiled(cluster, "bob")
        await cluster.wait_for("the Deployment", lambda: cluster.emulator.live_object("apps/v1/deployments", NS, "bob"))
        # One replica: not this deployment's to delete. Two: in the way, a NameConflict, still untouched.
        assert _budget(cluster, "bob") == before
        await _patch_spec(cluster, "bob", {"replicas": 2})

        def conflict() -> dict[str, Any] | None:
            status = (cluster.emulator.live_object(DEPLOYMENTS, NS, "bob") or {}).get("status") or {}
            return status if (status.get("failure") or {}).get("reason") == "NameConflict" else None

        status = await cluster.wait_for("the NameConflict", conflict)
        assert "PodDisruptionBudget team-a/bob" in status["failure"]["message"]
        assert _budget(cluster, "bob") == before
