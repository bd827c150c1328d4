"""The end-to-end harness: one :class:`Sandbox` on the real control plane for the whole run.

kube-apiserver, kube-controller-manager, kube-scheduler and etcd built from their Go modules, the Helm
chart installed into it (CRDs and RBAC from ``helm template``), the real operator running as the chart's
ServiceAccount, and the local executor as the kubelet of three simulated nodes (GPU, inf2, CPU). Nothing
is mocked: the operator, the trainer, the compile step and the inference server are the real programs;
Jobs, Deployments, ReplicaSets, scheduling, admission, RBAC and garbage collection are Kubernetes' own.
Only the nodes are simulated (their pods run as local processes; see ``sdxl_sandbox``).

Resources live in namespaces other than the operator's (``sdxl-system``), one or more per test
module, so modules share the cluster without seeing each other's objects. They use the embedded tiny
model with few steps so a module runs in a minute or two on two cores.
"""

from __future__ import annotations

import asyncio
import copy
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from sdxl_sandbox.sandbox import Sandbox

NAMESPACE = "team-a"
# Few steps, tiny images, no checkpoints: seconds of training on the embedded model. One GPU, as users
# ask: the scheduler puts the pod on the GPU node (the trainer itself runs on this machine's CPU).
SMALL_FINETUNE_SPEC: dict[str, Any] = {
    "baseModel": "builtin:tiny",
    "instanceImages": "builtin:sample-subject",
    "instancePrompt": "a photo of sks person",
    "training": {"maxSteps": 6, "resolution": 64, "learningRate": 1.0e-3, "mixedPrecision": "no",
                 "gradientCheckpointing": False, "checkpointEvery": 0},
    "validation": {"numInferenceSteps": 2},
    "resources": {"gpus": 1, "cpu": "1", "memory": "2Gi"},
}
CPU_DEPLOYMENT_SPEC: dict[str, Any] = {
    "accelerator": "cpu", "replicas": 1,
    "server": {"maxBatch": 1, "queueSize": 4, "requestTimeoutSeconds": 120},
    "resources": {"cpu": "1", "memory": "2Gi"},
}


def _finetune(name: str, namespace: str = NAMESPACE, **spec_changes: Any) -> dict[str, Any]:
    """An SDXLFineTune of the small spec; dict values update the spec's sections, others replace."""
    spec = copy.deepcopy(SMALL_FINETUNE_SPEC)
    for key, value in spec_changes.items():
        if isinstance(value, dict) and isinstance(spec.get(key), dict):
            spec[key].update(value)
        else:
            spec[key] = value
    return {"apiVersion": "sdxl.io/v1alpha1", "kind": "SDXLFineTune",
            "metadata": {"name": name, "namespace": namespace}, "spec": spec}


def _deployment(name: str, fine_tune: str, namespace: str = NAMESPACE, **spec_changes: Any) -> dict[str, Any]:
    """An SDXLDeployment serving SDXLFineTune ``fine_tune`` on CPU (``spec_changes`` replace spec fields)."""
    return {"apiVersion": "sdxl.io/v1alpha1", "kind": "SDXLDeployment",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"fineTune": fine_tune, **copy.deepcopy(CPU_DEPLOYMENT_SPEC), **spec_changes}}


@pytest.fixture
def make_finetune() -> Callable[..., dict[str, Any]]:
    return _finetune


@pytest.fixture
def make_deployment() -> Callable[..., dict[str, Any]]:
    return _deployment


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def sandbox(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Sandbox]:
    """One real control plane for the run; every process it started is gone afterwards."""
    workdir: Path = tmp_path_factory.mktemp("sandbox")
    async with Sandbox(workdir, threads=1, status_interval_seconds=0.5, poll_seconds=0.25,
                       control_plane="real", pending_grace_seconds=10.0) as running:
        yield running
    assert not running.local_processes()


@pytest.fixture(scope="session")
def kubectl(sandbox: Sandbox) -> Callable[..., Awaitable[subprocess.CompletedProcess[str]]]:
    """``await kubectl(*args)``: the control plane's own kubectl with the sandbox's admin kubeconfig.

    It runs in a thread: the executor (the nodes' kubelet) shares the test's event loop, and a blocking
    ``kubectl wait`` would stop the very pods it waits for.
    """
    assert sandbox.plane is not None
    binary = str(sandbox.plane.kubectl)

    async def run(*args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        result = await asyncio.to_thread(
            subprocess.run, [binary, "--kubeconfig", str(sandbox.kubeconfig), *args],
            capture_output=True, text=True, timeout=timeout, check=False)
        if check:
            assert result.returncode == 0, f"kubectl {' '.join(args)}: {result.stderr}"
        return result

    return run
