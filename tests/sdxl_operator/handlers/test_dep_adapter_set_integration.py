"""An SDXLDeployment of a set of fine-tunes, run for real against the API emulator over HTTP.

The operator resolves the labelled fine-tunes into the adapters ConfigMap, runs the server on the base
model without any compile Job, follows fine-tunes that succeed or lose their label without touching
the pod template, and refuses a set on Neuron even though the emulator runs no CEL. The fixtures
(``cluster``, ``operator_runner``) are in this folder's conftest.py.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from sdxl_operator.handlers.kube_api import USER_AGENT
from sdxl_operator.spec.adapter_set_spec import NEURON_MESSAGE

pytestmark = [pytest.mark.asyncio, pytest.mark.slow]

NS = "team-a"
DEPLOYMENTS = "sdxl.io/v1alpha1/sdxldeployments"
LABELS = {"team": "portraits"}
SET_SPEC: dict[str, Any] = {"fineTuneSelector": {"matchLabels": LABELS}, "baseModel": "builtin:tiny",
                            "accelerator": "cpu", "replicas": 1}


async def create_finetune(cluster: Any, name: str, spec: dict[str, Any]) -> None:
    body = {"apiVersion": "sdxl.io/v1alpha1", "kind": "SDXLFineTune",
            "metadata": {"name": name, "namespace": NS, "labels": dict(LABELS)}, "spec": copy.deepcopy(spec)}
    await cluster._call("post", f"/apis/sdxl.io/v1alpha1/namespaces/{NS}/sdxlfinetunes", body)


async def succeed_finetune(cluster: Any, name: str) -> None:
    await cluster.wait_for(f"Job of {name}", lambda: cluster.job(f"{name}-train"))
    pod = await cluster.start_pod(f"{name}-train")
    result = {"status": "Succeeded", "artifacts": {"lora": f"s3://b/{name}/lora.safetensors"},
              "metrics": {"loraSha256": "ab" * 32, "steps": 10}}
    await cluster.finish_pod(pod, exit_code=0, message=json.dumps(result))
    await cluster.finish_job(f"{name}-train", "Complete")
    await cluster.wait_for_status(name, lambda status: status.get("phase") == "Succeeded")


async def create_deployment(cluster: Any, name: str, spec: dict[str, Any]) -> None:
    body = {"apiVersion": "sdxl.io/v1alpha1", "kind": "SDXLDeployment",
            "metadata": {"name": name, "namespace": NS}, "spec": copy.deepcopy(spec)}
    await cluster._call("post", f"/apis/sdxl.io/v1alpha1/namespaces/{NS}/sdxldeployments", body)


def status_of(cluster: Any, name: str) -> dict[str, Any]:
    return dict((cluster.emulator.live_object(DEPLOYMENTS, NS, name) or {}).get("status") or {})


def adapters_file(cluster: Any, name: str) -> dict[str, str] | None:
    configmap = cluster.configmap(f"{name}-adapters")
    return json.loads(configmap["data"]["adapters.json"])["adapters"] if configmap else None


async def roll_out(cluster: Any, name: str) -> None:
    deployment = cluster.emulator.live_object("apps/v1/deployments", NS, name)
    await cluster._call("patch", f"/apis/apps/v1/namespaces/{NS}/deployments/{name}/status", {"status": {
        "observedGeneration": deployment["metadata"]["generation"], "replicas": 1, "updatedReplicas": 1,
        "readyReplicas": 1, "availableReplicas": 1}})


async def test_a_set_follows_its_fine_tunes_without_touching_the_pods(cluster: Any, operator_runner: Any,
                                                                      tiny_spec: Any) -> None:
    async with operator_runner():
        await create_finetune(cluster, "alice", tiny_spec)
        await create_finetune(cluster, "bob", tiny_spec)
        await succeed_finetune(cluster, "alice")
        await create_deployment(cluster, "portraits", SET_SPEC)

        await cluster.wait_for("the adapters file", lambda: adapters_file(cluster, "portraits") ==
                               {"alice": "s3://b/alice/lora.safetensors"})
        deployment = await cluster.wait_for(
            "the server", lambda: cluster.emulator.live_object("apps/v1/deployments", NS, "portraits"))
        args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
        assert args[args.index("--model") + 1] == "builtin:tiny"
        assert args[args.index("--adapters") + 1] == "/etc/sdxl/adapters/adapters.json"
        assert not [job for job in cluster.jobs() if "sdxl.io/compile-key" in job["metadata"]["labels"]]
        template_hash = deployment["metadata"]["annotations"]["sdxl.io/template-hash"]

        await roll_out(cluster, "portraits")
        status = await cluster.wait_for("Ready", lambda: status_of(cluster, "portraits").get("phase") == "Ready"
                                        and status_of(cluster, "portraits"))
        assert status["adapters"] == [{"name": "alice", "lora": "s3://b/alice/lora.safetensors", "ready": True}]
        assert status["adapterCount"] == 1
        assert [(e["name"], e["reason"]) for e in status["waitingFineTunes"]] == [("bob", "FineTunePending")]

        # bob succeeds: the settled deployment hears of it, and only the ConfigMap changes.
        await succeed_finetune(cluster, "bob")
        await cluster.wait_for("bob to join", lambda: sorted(adapters_file(cluster, "portraits") or {}) ==
                               ["alice", "bob"])
        await cluster.wait_for("bob in the status", lambda: status_of(cluster, "portraits").get("adapterCount") == 2)
        assert "waitingFineTunes" not in status_of(cluster, "portraits")
        # alice loses the label: she leaves.
        await cluster._call("patch", f"/apis/sdxl.io/v1alpha1/namespaces/{NS}/sdxlfinetunes/alice",
                            {"metadata": {"labels": {"team": None}}}, "application/merge-patch+json")
        await cluster.wait_for("alice to leave", lambda: sorted(adapters_file(cluster, "portraits") or {}) == ["bob"])
        deployment = cluster.emulator.live_object("apps/v1/deployments", NS, "portraits")
        assert deployment["metadata"]["annotations"]["sdxl.io/template-hash"] == template_hash
        # The sets of the namespace come from Kopf's index of the deployments: each is read, none listed.
        assert not [key for key in cluster.emulator.audit if key[0] == USER_AGENT
                    and key[1:] == ("list", "sdxl.io", "sdxldeployments")]


async def test_a_set_on_neuron_fails_as_invalid_even_without_cel(cluster: Any, operator_runner: Any) -> None:
    async with operator_runner():
        await create_deployment(cluster, "neuron-set", {**SET_SPEC, "accelerator": "neuron"})
        status = await cluster.wait_for("Failed", lambda: status_of(cluster, "neuron-set").get("phase") == "Failed"
                                        and status_of(cluster, "neuron-set"))
        assert status["failure"]["reason"] == "InvalidSpec"
        assert NEURON_MESSAGE.split(": ", 1)[1] in status["failure"]["message"]
        assert cluster.configmap("neuron-set-adapters") is None
        assert cluster.emulator.live_object("apps/v1/deployments", NS, "neuron-set") is None
