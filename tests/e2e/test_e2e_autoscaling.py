"""The autoscalers the operator builds, admitted by a real API server.

The HorizontalPodAutoscaler with a ``Pods`` metric on the server's queue gauge is created from the
builder the controller uses, owned by an SDXLDeployment: kube-apiserver validates it (autoscaling/v2
schema), ``kubectl get/describe hpa`` show the metric and its target, and the garbage collector removes
it with its SDXLDeployment. (The controller's own create/patch/switch is covered on the emulator in
tests/sdxl_operator/handlers/test_dep_autoscaling_integration.py: reaching it here would need a whole
fine-tune and prepare run first.) KEDA's ScaledObject is not admitted here: its CRD is not shipped by
any package this project can install without the network, so the emulator stands in for it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from sdxl_operator.manifests.autoscaler import build_autoscaler
from sdxl_operator.spec.model_source import ModelSource
from sdxl_operator.spec.resolved_deployment_spec import resolve_deployment_spec
from sdxl_sandbox.sandbox import Sandbox

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.asyncio(loop_scope="session")]

NAMESPACE = "team-autoscale"
EXAMPLE = Path(__file__).resolve().parents[2] / "crds" / "examples" / "deployment-autoscaling-queue.yaml"
Kubectl = Callable[..., Any]


async def test_queue_depth_hpa_is_admitted_shown_and_collected(sandbox: Sandbox, kubectl: Kubectl,
                                                               tmp_path: Path) -> None:
    await sandbox.ensure_namespace(NAMESPACE, artifact_claim=False)
    example = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
    example["metadata"]["namespace"] = NAMESPACE
    # Its fine-tune does not exist, so the operator keeps it Pending and builds nothing itself.
    owner = await sandbox.apply(example)
    name = owner["metadata"]["name"]
    source = ModelSource(lora="pvc://sdxl-artifacts/store/loras/alice.safetensors", base_model="builtin:tiny",
                         base_revision="main", lora_sha256=None, finetune=None)
    resolved = resolve_deployment_spec(owner["spec"], source, name=name, namespace=NAMESPACE,
                                       uid=owner["metadata"]["uid"])
    hpa = build_autoscaler(owner, resolved)
    assert hpa is not None
    manifest = tmp_path / "hpa.json"
    manifest.write_text(json.dumps(hpa), encoding="utf-8")
    await kubectl("create", "-f", str(manifest))

    stored = json.loads((await kubectl("get", "hpa", "-n", NAMESPACE, name, "-o", "json")).stdout)
    assert stored["spec"]["metrics"] == [{"type": "Pods", "pods": {
        "metric": {"name": "sdxl_queue_depth"}, "target": {"type": "AverageValue", "averageValue": "2"}}}]
    assert (stored["spec"]["minReplicas"], stored["spec"]["maxReplicas"]) == (1, 8)
    table = (await kubectl("get", "hpa", "-n", NAMESPACE, name)).stdout
    assert "TARGETS" in table and "/2" in table, table  # no adapter here: the current value is <unknown>
    described = (await kubectl("describe", "hpa", "-n", NAMESPACE, name)).stdout
    assert '"sdxl_queue_depth" on pods' in described, described

    # A fractional target is a milli-quantity the API server keeps as written.
    await kubectl("patch", "hpa", "-n", NAMESPACE, name, "--type", "merge", "-p", json.dumps({"spec": {
        "metrics": [{"type": "Pods", "pods": {"metric": {"name": "sdxl_requests_in_flight"},
                                              "target": {"type": "AverageValue", "averageValue": "500m"}}}]}}))
    patched = json.loads((await kubectl("get", "hpa", "-n", NAMESPACE, name, "-o", "json")).stdout)
    assert patched["spec"]["metrics"][0]["pods"]["target"]["averageValue"] == "500m"

    # Owned by the SDXLDeployment: deleting it lets the garbage collector remove the HPA.
    await sandbox.delete(owner)

    async def collected() -> bool | None:
        return await sandbox.get("autoscaling/v2/horizontalpodautoscalers", NAMESPACE, name) is None or None

    await sandbox.wait_for("the HPA to be garbage-collected", collected, 90)
