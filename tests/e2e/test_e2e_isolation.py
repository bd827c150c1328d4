"""Tenant isolation on the real control plane: reserved namespaces are never touched, another tenant's
store prefix is refused before anything runs, and each inference service gets a NetworkPolicy that the
API server admits under the chart's RBAC and the garbage collector removes with its owner.

No network plugin runs here, so the policy's traffic rules are not enforced: what is shown is that the
object exists, is ours, and admits what it should on paper (see tests/sdxl_operator for its manifest).
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from sdxl_sandbox.sandbox import DEPLOYMENTS, FINETUNES, Sandbox

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.asyncio(loop_scope="session")]


async def test_a_resource_in_kube_system_is_never_reconciled(sandbox: Sandbox, make_finetune: Any) -> None:
    created = await sandbox.apply(make_finetune("ignored", "kube-system"))
    await asyncio.sleep(10)  # twenty status intervals of the sandbox's operator
    now = await sandbox.get(FINETUNES, "kube-system", "ignored")
    assert now is not None
    assert now["metadata"]["resourceVersion"] == created["metadata"]["resourceVersion"]  # not even annotated
    assert not now.get("status") and not now["metadata"].get("finalizers")
    jobs = await sandbox.list("batch/v1/jobs", "kube-system")
    assert not [j for j in jobs if j["metadata"]["name"].startswith("ignored")]
    assert await sandbox.get("v1/serviceaccounts", "kube-system", "sdxl-operator-workload") is None
    await sandbox.delete(make_finetune("ignored", "kube-system"))


async def test_another_tenants_store_prefix_is_refused_before_anything_runs(
        sandbox: Sandbox, make_finetune: Any) -> None:
    await sandbox.ensure_namespace("tenant-thief")
    stolen = "pvc://sdxl-artifacts/store/finetunes/tenant-victim/portraits"
    await sandbox.apply(make_finetune("thief", "tenant-thief", output=stolen))
    failed = await sandbox.wait_for_phase(FINETUNES, "tenant-thief", "thief", "Failed", 60)
    assert failed["failure"]["reason"] == "InvalidSpec"
    assert "spec.output" in failed["failure"]["message"] and "tenant-thief" in failed["failure"]["message"]
    jobs = await sandbox.list("batch/v1/jobs", "tenant-thief")
    assert not [j for j in jobs if j["metadata"]["name"].startswith("thief")]


async def test_inference_pods_get_a_network_policy_owned_by_their_deployment(
        sandbox: Sandbox, make_finetune: Any, make_deployment: Any) -> None:
    namespace = "tenant-policy"
    await sandbox.ensure_namespace(namespace)
    await sandbox.apply(make_finetune("policy-ft", namespace))
    deployment = make_deployment("fenced", "policy-ft", namespace)
    await sandbox.apply(deployment)
    served = await sandbox.wait_for_phase(DEPLOYMENTS, namespace, "fenced", "Ready", 600)

    policy = await sandbox.get("networking.k8s.io/v1/networkpolicies", namespace, "fenced")
    assert policy is not None, "no NetworkPolicy for the inference pods"
    [owner] = policy["metadata"]["ownerReferences"]
    resource = await sandbox.get(DEPLOYMENTS, namespace, "fenced")
    assert resource is not None and owner["uid"] == resource["metadata"]["uid"] and owner["controller"] is True
    server = await sandbox.get("apps/v1/deployments", namespace, "fenced")
    assert server is not None
    # It selects exactly the server pods and admits the namespace on the server port only.
    selected = policy["spec"]["podSelector"]["matchLabels"]
    assert selected.items() <= server["spec"]["template"]["metadata"]["labels"].items()
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    ports = [port for rule in policy["spec"]["ingress"] for port in rule.get("ports") or []]
    assert ports and {port["port"] for port in ports} == {8080}
    assert served["url"] == f"http://fenced.{namespace}.svc:8080"

    await sandbox.delete(deployment)

    async def collected() -> bool:
        return await sandbox.get("networking.k8s.io/v1/networkpolicies", namespace, "fenced") is None

    await sandbox.wait_for("the garbage collector to remove the policy", collected, 60)
