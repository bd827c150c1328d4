"""End to end on the real control plane: one SDXLDeployment serving a set of fine-tunes as adapters.

Two labelled fine-tunes of the embedded model (one with a text-encoder LoRA) and a CPU deployment with
a fineTuneSelector: it becomes Ready with both adapters; each adapter and the base model give
different images; an unknown adapter is a 404 naming it; a third labelled fine-tune joins the running
server without a pod restart (the kubelet updates the mounted adapters ConfigMap, the server re-reads
it); a fine-tune of the same name and labels in another namespace is never served; and the API server
refuses a set on Neuron.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from sdxl_sandbox.image_request import generate_images
from sdxl_sandbox.sandbox import DEPLOYMENTS, FINETUNES, Sandbox

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.asyncio(loop_scope="session")]

NS = "team-c"
OTHER_NS = "team-d"
LABELS = {"team": "portraits"}
TRAIN_TIMEOUT = 300.0
SERVE_TIMEOUT = 300.0
JOIN_TIMEOUT = 120.0
PROMPT = "a photo of sks person"


def labelled_finetune(make_finetune: Any, name: str, namespace: str = NS, **spec: Any) -> dict[str, Any]:
    # On the CPU node (gpus: 0), so the trainings run side by side rather than one at a time on the GPU node.
    finetune: dict[str, Any] = make_finetune(name, namespace, resources={"gpus": 0}, **spec)
    finetune["metadata"]["labels"] = dict(LABELS)
    return finetune


def portraits(make_deployment: Any, **spec: Any) -> dict[str, Any]:
    deployment: dict[str, Any] = make_deployment("portraits", "unused", NS, baseModel="builtin:tiny",
                                                 fineTuneSelector={"matchLabels": dict(LABELS)}, **spec)
    del deployment["spec"]["fineTune"]
    return deployment


async def served_adapters(url: str) -> list[str]:
    async with aiohttp.ClientSession() as session, session.get(f"{url}/v1/adapters") as response:
        assert response.status == 200
        return sorted((await response.json())["adapters"])


async def server_pods(sandbox: Sandbox) -> list[dict[str, Any]]:
    return [pod for pod in await sandbox.list("v1/pods", NS)
            if pod["metadata"]["labels"].get("sdxl.io/deployment") == "portraits"
            and not pod["metadata"].get("deletionTimestamp")]


async def wait_for_status(sandbox: Sandbox, what: str, done: Any, timeout: float) -> dict[str, Any]:
    """The deployment's status once ``done(status)``; on timeout the error shows the last status."""

    async def check() -> dict[str, Any] | None:
        status = await sandbox.status(DEPLOYMENTS, NS, "portraits")
        return status if done(status) else None

    try:
        return await sandbox.wait_for(what, check, timeout)
    except TimeoutError as exc:
        raise TimeoutError(f"{exc}; last status: {await sandbox.status(DEPLOYMENTS, NS, 'portraits')}; "
                           f"operator log: {sandbox.operator_log}") from None


def ready_adapters(status: dict[str, Any]) -> list[str]:
    return [a["name"] for a in status.get("adapters") or [] if a["ready"]] if status.get("phase") == "Ready" else []


async def test_a_deployment_serves_a_set_of_fine_tunes_and_a_new_one_joins_without_a_restart(
        sandbox: Sandbox, kubectl: Any, make_finetune: Any, make_deployment: Any) -> None:
    await sandbox.ensure_namespace(NS)
    await sandbox.ensure_namespace(OTHER_NS)
    # Another tenant's fine-tune with the name and labels the third one of team-c will have.
    await sandbox.apply(labelled_finetune(make_finetune, "c-third", OTHER_NS))
    await sandbox.apply(labelled_finetune(make_finetune, "c-alpha"))
    await sandbox.apply(labelled_finetune(make_finetune, "c-beta", training={"trainTextEncoder": True}))
    await sandbox.apply(portraits(make_deployment))

    for namespace, name in ((NS, "c-alpha"), (NS, "c-beta"), (OTHER_NS, "c-third")):
        await sandbox.wait_for_phase(FINETUNES, namespace, name, "Succeeded", TRAIN_TIMEOUT)
    await sandbox.wait_for_phase(DEPLOYMENTS, NS, "portraits", "Ready", SERVE_TIMEOUT)

    status = await wait_for_status(sandbox, "both adapters ready",
                                   lambda s: ready_adapters(s) == ["c-alpha", "c-beta"], SERVE_TIMEOUT)
    assert status["adapterCount"] == 2
    assert all(a["lora"].startswith(f"pvc://sdxl-artifacts/store/finetunes/{NS}/") for a in status["adapters"])
    assert "waitingFineTunes" not in status and "rejectedFineTunes" not in status  # team-d's is not a candidate
    # No compile or prepare Job for a set: the server loads the base model itself.
    assert not [job for job in await sandbox.list("batch/v1/jobs", NS)
                if job["metadata"]["labels"].get("sdxl.io/deployment") == "portraits"]
    table = (await kubectl("get", "sdxldep", "-n", NS)).stdout
    header, row = table.splitlines()[0].split(), table.splitlines()[1].split()
    assert "ADAPTERS" in header and row[header.index("ADAPTERS")] == "2", table

    url = await sandbox.wait_for("the Service to route", lambda: sandbox.service_url(NS, "portraits"), 30)
    await sandbox.wait_for("the server to read both adapters",
                           lambda: _lists(url, ["c-alpha", "c-beta"]), JOIN_TIMEOUT)
    steps = {"num_inference_steps": 2}
    base, = await generate_images(url, PROMPT, num_images=1, seed=7, extra=steps)
    alpha, = await generate_images(url, PROMPT, num_images=1, seed=7, extra={**steps, "adapter": "c-alpha"})
    beta, = await generate_images(url, PROMPT, num_images=1, seed=7, extra={**steps, "adapter": "c-beta"})
    assert len({base, alpha, beta}) == 3

    async with aiohttp.ClientSession() as session, session.post(
            f"{url}/v1/generate", json={"prompt": PROMPT, "adapter": "c-nobody", **steps}) as response:
        assert response.status == 404
        assert "c-nobody" in await response.text()

    # A third labelled fine-tune joins the running server: same pod, no restart.
    [pod] = await server_pods(sandbox)
    # Another seed: trained like c-alpha otherwise, it would be the very same LoRA.
    await sandbox.apply(labelled_finetune(make_finetune, "c-third", training={"seed": 3}))
    await sandbox.wait_for_phase(FINETUNES, NS, "c-third", "Succeeded", TRAIN_TIMEOUT)

    status = await wait_for_status(sandbox, "the third adapter",
                                   lambda s: ready_adapters(s) == ["c-alpha", "c-beta", "c-third"], JOIN_TIMEOUT)
    third = next(a for a in status["adapters"] if a["name"] == "c-third")
    assert third["lora"].startswith(f"pvc://sdxl-artifacts/store/finetunes/{NS}/c-third/")  # never team-d's
    assert status["adapterCount"] == 3
    await sandbox.wait_for("the server to read the third adapter",
                           lambda: _lists(url, ["c-alpha", "c-beta", "c-third"]), JOIN_TIMEOUT)
    third_image, = await generate_images(url, PROMPT, num_images=1, seed=7, extra={**steps, "adapter": "c-third"})
    assert third_image not in (base, alpha, beta)
    [same] = await server_pods(sandbox)
    assert same["metadata"]["uid"] == pod["metadata"]["uid"]
    assert all(int(c.get("restartCount") or 0) == 0 for c in same["status"].get("containerStatuses") or [])


async def _lists(url: str, names: list[str]) -> bool:
    try:
        return await served_adapters(url) == names
    except aiohttp.ClientError:
        return False


async def test_the_api_server_refuses_a_set_of_fine_tunes_on_neuron(sandbox: Sandbox, kubectl: Any,
                                                                    make_deployment: Any, tmp_path: Path) -> None:
    await sandbox.ensure_namespace(NS)
    deployment = make_deployment("neuron-set", "unused", NS, baseModel="builtin:tiny", fineTunes=["c-alpha"],
                                 accelerator="neuron")
    del deployment["spec"]["fineTune"]
    path = tmp_path / "neuron-set.json"
    path.write_text(json.dumps(deployment))
    result = await kubectl("apply", "--dry-run=server", "-f", str(path), check=False)
    assert result.returncode != 0
    assert "a LoRA is fused into the model at compile time" in result.stderr, result.stderr
