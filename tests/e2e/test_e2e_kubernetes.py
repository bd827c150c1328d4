"""What only a real API server can show: admission of our CRDs, placement by the scheduler, and kubectl.

The control plane is real (see tests/e2e/conftest.py): the CRDs' OpenAPI schemas, CEL rules (with
their cost estimate) and defaults are enforced by kube-apiserver itself, kube-scheduler places pods by
resources, taints and node selectors, and ``kubectl`` is the control plane's own build.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from sdxl_sandbox.sandbox import DEPLOYMENTS, FINETUNES, Sandbox
from sdxl_sandbox.simulated_nodes import INF2_NODE, set_schedulable

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.asyncio(loop_scope="session")]

REPO_ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = REPO_ROOT / "crds" / "examples"
Kubectl = Callable[..., Any]


def example_files() -> list[Path]:
    return sorted(EXAMPLES.glob("*.yaml"))


def invalid_files() -> list[Path]:
    return sorted((EXAMPLES / "invalid").glob("*.yaml"))


@pytest.mark.parametrize("example", example_files(), ids=lambda p: p.name)
async def test_every_example_is_accepted_by_the_api_server(sandbox: Sandbox, kubectl: Kubectl,
                                                           example: Path) -> None:
    await sandbox.ensure_namespace("examples", artifact_claim=False)
    # Server-side dry run: admission, schema, CEL and defaults run; nothing is stored. kubectl validates
    # fields strictly against the served OpenAPI document, so an unknown field fails here too.
    result = await kubectl("apply", "--dry-run=server", "-n", "examples", "-f", str(example), "-o", "json", check=False)
    assert result.returncode == 0, f"{example.name}: {result.stderr}"
    accepted = json.loads(result.stdout)
    assert accepted["metadata"]["namespace"] == "examples"  # the examples name no namespace of their own


@pytest.mark.parametrize("invalid", invalid_files(), ids=lambda p: p.name)
async def test_every_invalid_example_is_refused_by_the_api_server(sandbox: Sandbox, kubectl: Kubectl,
                                                                  invalid: Path) -> None:
    await sandbox.ensure_namespace("examples", artifact_claim=False)
    result = await kubectl("apply", "--dry-run=server", "-n", "examples", "-f", str(invalid), check=False)
    assert result.returncode != 0, f"{invalid.name} was accepted by the API server:\n{result.stdout}"
    # Refused by the server's admission or schema (or kubectl's strict field check against the server's
    # OpenAPI), never by a client-side parse error.
    refusal = result.stderr.lower()
    assert "is invalid" in refusal or "strict decoding error" in refusal or "unknown field" in refusal, \
        f"{invalid.name}: {result.stderr}"


async def test_kubectl_get_describe_explain_wait_and_logs(sandbox: Sandbox, kubectl: Kubectl,
                                                          make_finetune: Any) -> None:
    namespace = "team-kubectl"
    await sandbox.ensure_namespace(namespace)
    await sandbox.apply(make_finetune("kubectl-subject", namespace))
    waited = await kubectl("wait", "-n", namespace, "--for=jsonpath={.status.phase}=Succeeded",
                     "sdxlfinetune/kubectl-subject", "--timeout=300s", check=False, timeout=330)
    last = await sandbox.status(FINETUNES, namespace, "kubectl-subject")
    assert waited.returncode == 0, f"{waited.stderr}; last status: {last}"
    await kubectl("wait", "-n", namespace, "--for=condition=Ready", "sdxlft/kubectl-subject", "--timeout=30s")

    table = (await kubectl("get", "-n", namespace, "sdxlft", "kubectl-subject")).stdout.splitlines()
    assert table[0].split()[:4] == ["NAME", "PHASE", "STEP", "LOSS"]
    assert table[1].split()[:3] == ["kubectl-subject", "Succeeded", "6"]
    described = (await kubectl("describe", "-n", namespace, "sdxlfinetune", "kubectl-subject")).stdout
    assert "Phase:" in described and "Succeeded" in described and "Events:" in described
    explained = (await kubectl("explain", "sdxlfinetune.spec.training.maxSteps")).stdout
    assert "maxSteps" in explained and "DESCRIPTION" in explained.upper()
    # Pod logs go through the API server's proxy to the node's kubelet endpoint (the executor here).
    logs = (await kubectl("logs", "-n", namespace, "job/kubectl-subject-train")).stdout
    progress = [json.loads(line) for line in logs.splitlines() if line.startswith('{"event": "progress"')]
    assert progress and progress[-1]["step"] == 6
    assert (await kubectl("get", "sdxl", "-A")).stdout.count("kubectl-subject") >= 1  # the category lists both kinds


async def test_neuron_compile_lands_only_on_the_inf2_node_and_waits_unschedulable_without_one(
        sandbox: Sandbox, make_deployment: Any) -> None:
    namespace = "team-neuron"
    await sandbox.ensure_namespace(namespace)
    client = sandbox.client
    assert client is not None
    spec = {"accelerator": "neuron", "baseModel": "builtin:tiny",
            "lora": f"pvc://sdxl-artifacts/store/finetunes/{namespace}/absent/pytorch_lora_weights.safetensors",
            "neuron": {"batchSize": 1, "height": 256, "width": 256, "numImagesPerPrompt": 1},
            "resources": {"cpu": "1", "memory": "2Gi"}}
    deployment = make_deployment("neuron-placed", "unused", namespace)
    deployment["spec"] = spec

    # No inf2 node can take pods: the compile pod stays Pending and the resource says why, in the
    # scheduler's own words, once the pending grace period has passed.
    await set_schedulable(client, INF2_NODE, False)
    try:
        await sandbox.apply(deployment)

        async def unschedulable() -> dict[str, Any] | None:
            status = await sandbox.status(DEPLOYMENTS, namespace, "neuron-placed")
            failure = status.get("failure") or {}
            return status if failure.get("reason") == "Unschedulable" else None

        status = await sandbox.wait_for("the compile to be reported Unschedulable", unschedulable, 120)
        message = status["failure"]["message"]
        assert "0/3 nodes are available" in message, message
        assert "unschedulable" in message or "untolerated taint" in message, message
        pods = [p for p in await sandbox.list("v1/pods", namespace)
                if p["metadata"]["labels"].get("app.kubernetes.io/name") == "sdxl-compiler"]
        assert pods and all(not p["spec"].get("nodeName") for p in pods)
    finally:
        await set_schedulable(client, INF2_NODE, True)

    # With the node back, the scheduler binds the compile pod to it: the only node with a Neuron
    # device and the instance type the compile pool selects, behind a taint the pod tolerates.
    async def placed() -> str | None:
        for pod in await sandbox.list("v1/pods", namespace):
            if pod["metadata"]["labels"].get("app.kubernetes.io/name") == "sdxl-compiler":
                return str(pod["spec"].get("nodeName") or "") or None
        return None

    assert await sandbox.wait_for("the compile pod to be scheduled", placed, 120) == INF2_NODE.name
    await sandbox.delete(deployment)
