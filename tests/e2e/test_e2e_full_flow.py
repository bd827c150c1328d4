"""End to end on the real control plane: a deployment that waits for its fine-tune, training on the
GPU node, serving through Deployment → ReplicaSet → pod, generating, a change rolled out without
downtime, and deleting both, with the garbage collector removing every child and process.

The real operator, trainer, compile step and inference server run as local processes; Kubernetes is
the real control plane (see tests/e2e/conftest.py). The command-level test (test_e2e_command.py)
covers the usual order, fine-tune and deployment applied together.
"""

from __future__ import annotations

import asyncio
import struct
import time
from typing import Any

import aiohttp
import pytest

from sdxl_sandbox.image_request import PNG_SIGNATURE, generate_images
from sdxl_sandbox.sandbox import DEPLOYMENTS, FINETUNES, Sandbox

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.asyncio(loop_scope="session")]

NS = "team-a"
TRAIN_TIMEOUT = 300.0
SERVE_TIMEOUT = 300.0


def png_size(png: bytes) -> tuple[int, int]:
    assert png.startswith(PNG_SIGNATURE), "not a PNG file"
    width, height = struct.unpack(">II", png[16:24])  # the IHDR chunk comes first
    return int(width), int(height)


async def children(sandbox: Sandbox, label: str, name: str) -> list[tuple[str, str]]:
    """(resource, name) of every Job, Deployment, ReplicaSet, Service, ConfigMap and pod labelled for ``name``."""
    found = []
    for resource in ("batch/v1/jobs", "apps/v1/deployments", "apps/v1/replicasets", "v1/services",
                     "v1/configmaps", "v1/pods"):
        for obj in await sandbox.list(resource, NS):
            if (obj["metadata"].get("labels") or {}).get(label) == name:
                found.append((resource, obj["metadata"]["name"]))
    return found



def ours(sandbox: Sandbox) -> list[tuple[str, str]]:
    """This test's namespace's workload processes: the session's sandbox also runs other tests' servers."""
    return [pod for pod in sandbox.local_processes() if pod[0] == NS]

async def test_deployment_waits_for_its_finetune_serves_rolls_and_deletion_stops_everything(
        sandbox: Sandbox, make_finetune: Any, make_deployment: Any, kubectl: Any) -> None:
    # The deployment comes first and waits for a fine-tune that does not exist yet.
    await sandbox.ensure_namespace(NS)
    await sandbox.apply(make_deployment("e2e-cpu", "e2e-subject"))
    waiting = await sandbox.wait_for_phase(DEPLOYMENTS, NS, "e2e-cpu", "Pending", 60)
    fine_tune_ready = next(c for c in waiting["conditions"] if c["type"] == "FineTuneReady")
    assert (fine_tune_ready["status"], fine_tune_ready["reason"]) == ("False", "FineTuneNotFound")
    assert "e2e-subject" in fine_tune_ready["message"]
    assert not await children(sandbox, "sdxl.io/deployment", "e2e-cpu")  # nothing compiled or served yet

    await sandbox.apply(make_finetune("e2e-subject"))
    trained = await sandbox.wait_for_phase(FINETUNES, NS, "e2e-subject", "Succeeded", TRAIN_TIMEOUT)
    assert trained["progress"]["step"] == trained["progress"]["totalSteps"] == 6
    assert trained["artifacts"]["lora"].startswith(f"pvc://sdxl-artifacts/store/finetunes/{NS}/e2e-subject/")
    # The quality report reached the status through the apiserver's strict schema: no CLIP model was
    # named, so CLIP-I/CLIP-T are skipped with the field to set, and -o wide has their columns.
    assert trained["quality"]["images"] == 1
    assert trained["quality"]["skipped"]["clipText"] == "no model given in spec.quality.clipModel"
    header = (await kubectl("get", "sdxlft", "e2e-subject", "-n", NS, "-o", "wide")).stdout.splitlines()[0].split()
    assert {"IDENTITY", "PROMPT", "CLIP-I", "CLIP-T"} <= set(header)
    # The scheduler put the training pod on the GPU node: it asks for nvidia.com/gpu and tolerates the taint.
    [train_pod] = [pod for pod in await sandbox.list("v1/pods", NS)
                   if pod["metadata"]["labels"].get("sdxl.io/finetune") == "e2e-subject"]
    assert train_pod["spec"]["nodeName"] == "sim-gpu"
    assert train_pod["status"]["phase"] == "Succeeded"
    # The artifact store is a claim, which the sandbox keeps as a folder: the LoRA is really there.
    lora = sandbox.workdir / "pvcs" / trained["artifacts"]["lora"][len("pvc://"):]
    assert lora.is_file() and lora.stat().st_size > 0

    served = await sandbox.wait_for_phase(DEPLOYMENTS, NS, "e2e-cpu", "Ready", SERVE_TIMEOUT)
    assert served["url"] == f"http://e2e-cpu.{NS}.svc:8080"
    assert served["readyReplicas"] == 1
    assert next(c for c in served["conditions"] if c["type"] == "FineTuneReady")["status"] == "True"
    url = await sandbox.wait_for("the Service to route", lambda: sandbox.service_url(NS, "e2e-cpu"), 30)
    images = await generate_images(url, "a photo of sks person on the beach", num_images=2, seed=1,
                                   extra={"num_inference_steps": 2})
    assert len(images) == 2
    assert {png_size(image) for image in images} == {(64, 64)}
    assert images[0] != images[1]  # seeds 1 and 2
    # Training and compile have finished; the server pod is the one process still running.
    servers = [pod for pod in await sandbox.list("v1/pods", NS)
               if pod["metadata"]["labels"].get("app.kubernetes.io/name") == "sdxl-server"]
    server_pods = [pod["metadata"]["name"] for pod in servers]
    assert len(server_pods) == 1
    # Deployment → ReplicaSet → pod, made by the controller manager; a CPU server lands on a node without taints.
    [owner] = servers[0]["metadata"]["ownerReferences"]
    assert owner["kind"] == "ReplicaSet" and owner["name"].startswith("e2e-cpu-")
    assert servers[0]["spec"]["nodeName"] == "sim-cpu"
    assert ours(sandbox) == [(NS, server_pods[0])]

    # A change of the compiled model (the LoRA scale) recompiles and rolls out; the old server answers
    # until the new one is ready, so the Service never goes dark.
    await sandbox.patch(make_deployment("e2e-cpu", "e2e-subject"), {"spec": {"loraScale": 0.5}})
    deadline = time.monotonic() + SERVE_TIMEOUT
    while True:
        url = sandbox.service_url(NS, "e2e-cpu")
        assert url is not None, "the Service lost every server during the rollout"
        async with aiohttp.ClientSession() as session, session.get(f"{url}/readyz") as response:
            assert response.status == 200
        status = await sandbox.status(DEPLOYMENTS, NS, "e2e-cpu")
        if status.get("phase") == "Ready" and status.get("observedGeneration") == 2 and \
                status.get("liveArtifact") != served["liveArtifact"]:
            break
        assert time.monotonic() < deadline, f"the change never rolled out: {status}"
        await asyncio.sleep(0.2)
    assert status["compileKey"] != served["compileKey"]
    await sandbox.wait_for("the old server to stop", lambda: len(ours(sandbox)) == 1
                           and (NS, server_pods[0]) not in ours(sandbox), 30)

    await sandbox.delete(make_deployment("e2e-cpu", "e2e-subject"))
    await sandbox.delete(make_finetune("e2e-subject"))
    async def all_collected() -> bool:
        return not (await children(sandbox, "sdxl.io/deployment", "e2e-cpu")
                    + await children(sandbox, "sdxl.io/finetune", "e2e-subject"))

    # Kubernetes' garbage collector follows the ownerReferences the operator set.
    await sandbox.wait_for("every child to be garbage-collected", all_collected, 60)
    await sandbox.wait_for("every local process to stop", lambda: not ours(sandbox)
                           and sandbox.executor is not None and not sandbox.executor.kubelet.stopping, 60)
