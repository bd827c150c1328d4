"""End to end through the sandbox: a deployment that waits for its fine-tune, training, serving,
generating, a change rolled out without downtime, and deleting both with every process stopped.

The real operator, trainer, compile step and inference server run as local processes against the
emulated API server (nothing mocked; see tests/e2e/conftest.py). The command-level test
(test_e2e_command.py) covers the usual order, fine-tune and deployment applied together.
"""

from __future__ import annotations

import asyncio
import struct
import time
from typing import Any

import aiohttp
import pytest

from sdxl_operator.sandbox.image_request import PNG_SIGNATURE, generate_images
from sdxl_operator.sandbox.sandbox import DEPLOYMENTS, FINETUNES, Sandbox

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.asyncio(loop_scope="module")]

NS = "default"
TRAIN_TIMEOUT = 300.0
SERVE_TIMEOUT = 300.0


def png_size(png: bytes) -> tuple[int, int]:
    assert png.startswith(PNG_SIGNATURE), "not a PNG file"
    width, height = struct.unpack(">II", png[16:24])  # the IHDR chunk comes first
    return int(width), int(height)


def children(sandbox: Sandbox, label: str, name: str) -> list[tuple[str, str]]:
    """(resource, name) of every Job, Deployment, Service, ConfigMap and pod labelled for ``name``."""
    found = []
    for resource in ("batch/v1/jobs", "apps/v1/deployments", "v1/services", "v1/configmaps", "v1/pods"):
        for obj in sandbox.list(resource, NS):
            if (obj["metadata"].get("labels") or {}).get(label) == name:
                found.append((resource, obj["metadata"]["name"]))
    return found


async def test_deployment_waits_for_its_finetune_serves_rolls_and_deletion_stops_everything(
        sandbox: Sandbox, make_finetune: Any, make_deployment: Any) -> None:
    # The deployment comes first and waits for a fine-tune that does not exist yet.
    await sandbox.apply(make_deployment("e2e-cpu", "e2e-subject"))
    waiting = await sandbox.wait_for_phase(DEPLOYMENTS, NS, "e2e-cpu", "Pending", 60)
    fine_tune_ready = next(c for c in waiting["conditions"] if c["type"] == "FineTuneReady")
    assert (fine_tune_ready["status"], fine_tune_ready["reason"]) == ("False", "FineTuneNotFound")
    assert "e2e-subject" in fine_tune_ready["message"]
    assert not children(sandbox, "sdxl.io/deployment", "e2e-cpu")  # nothing compiled or served yet

    await sandbox.apply(make_finetune("e2e-subject"))
    trained = await sandbox.wait_for_phase(FINETUNES, NS, "e2e-subject", "Succeeded", TRAIN_TIMEOUT)
    assert trained["progress"]["step"] == trained["progress"]["totalSteps"] == 6
    assert trained["artifacts"]["lora"].startswith("pvc://sdxl-artifacts/store/finetunes/default/e2e-subject/")
    # The artifact store is a claim, which the sandbox keeps as a folder: the LoRA is really there.
    lora = sandbox.workdir / "pvcs" / trained["artifacts"]["lora"][len("pvc://"):]
    assert lora.is_file() and lora.stat().st_size > 0

    served = await sandbox.wait_for_phase(DEPLOYMENTS, NS, "e2e-cpu", "Ready", SERVE_TIMEOUT)
    assert served["url"] == "http://e2e-cpu.default.svc:8080"
    assert served["readyReplicas"] == 1
    assert next(c for c in served["conditions"] if c["type"] == "FineTuneReady")["status"] == "True"
    url = await sandbox.wait_for("the Service to route", lambda: sandbox.service_url(NS, "e2e-cpu"), 30)
    images = await generate_images(url, "a photo of sks person on the beach", num_images=2, seed=1,
                                   extra={"num_inference_steps": 2})
    assert len(images) == 2
    assert {png_size(image) for image in images} == {(64, 64)}
    assert images[0] != images[1]  # seeds 1 and 2
    # Training and compile have finished; the server pod is the one process still running.
    server_pods = [pod["metadata"]["name"] for pod in sandbox.list("v1/pods", NS)
                   if pod["metadata"]["labels"].get("app.kubernetes.io/name") == "sdxl-server"]
    assert len(server_pods) == 1
    assert list(sandbox.local_processes()) == [(NS, server_pods[0])]

    # A change of the compiled model (the LoRA scale) recompiles and rolls out; the old server answers
    # until the new one is ready, so the Service never goes dark.
    await sandbox.patch(make_deployment("e2e-cpu", "e2e-subject"), {"spec": {"loraScale": 0.5}})
    deadline = time.monotonic() + SERVE_TIMEOUT
    while True:
        url = sandbox.service_url(NS, "e2e-cpu")
        assert url is not None, "the Service lost every server during the rollout"
        async with aiohttp.ClientSession() as session, session.get(f"{url}/readyz") as response:
            assert response.status == 200
        status = sandbox.status(DEPLOYMENTS, NS, "e2e-cpu")
        if status.get("phase") == "Ready" and status.get("observedGeneration") == 2 and \
                status.get("liveArtifact") != served["liveArtifact"]:
            break
        assert time.monotonic() < deadline, f"the change never rolled out: {status}"
        await asyncio.sleep(0.2)
    assert status["compileKey"] != served["compileKey"]
    await sandbox.wait_for("the old server to stop", lambda: len(sandbox.local_processes()) == 1
                           and (NS, server_pods[0]) not in sandbox.local_processes(), 30)

    await sandbox.delete(make_deployment("e2e-cpu", "e2e-subject"))
    await sandbox.delete(make_finetune("e2e-subject"))
    await sandbox.wait_for("every child to be garbage-collected", lambda: not (
        children(sandbox, "sdxl.io/deployment", "e2e-cpu") + children(sandbox, "sdxl.io/finetune", "e2e-subject")),
        30)
    await sandbox.wait_for("every local process to stop", lambda: not sandbox.local_processes()
                           and sandbox.executor is not None and not sandbox.executor.kubelet.stopping, 30)
