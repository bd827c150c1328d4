"""The end-to-end harness: one :class:`Sandbox` (API emulator, the real operator in its own process, the
local executor running workloads as local processes) per test module, as ``make demo`` runs it.

Nothing is mocked: the operator, the trainer, the compile step and the inference server are the real
programs; only Kubernetes itself is emulated (see ``sdxl_operator.sandbox``). The resources use the
embedded tiny model with few steps so a module runs in a minute or two on two cores.
"""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from sdxl_operator.sandbox.sandbox import Sandbox

NAMESPACE = "default"
# Few steps, tiny images, no checkpoints: seconds of training on the embedded model.
SMALL_FINETUNE_SPEC: dict[str, Any] = {
    "baseModel": "builtin:tiny",
    "instanceImages": "builtin:sample-subject",
    "instancePrompt": "a photo of sks person",
    "training": {"maxSteps": 6, "resolution": 64, "learningRate": 1.0e-3, "mixedPrecision": "no",
                 "gradientCheckpointing": False, "checkpointEvery": 0},
    "validation": {"numInferenceSteps": 2},
    "resources": {"gpus": 0, "cpu": "1", "memory": "2Gi"},
}
CPU_DEPLOYMENT_SPEC: dict[str, Any] = {
    "accelerator": "cpu", "replicas": 1,
    "server": {"maxBatch": 1, "queueSize": 4, "requestTimeoutSeconds": 120},
    "resources": {"cpu": "1", "memory": "2Gi"},
}


def _finetune(name: str, **spec_changes: Any) -> dict[str, Any]:
    """An SDXLFineTune of the small spec; dict values update the spec's sections, others replace."""
    spec = copy.deepcopy(SMALL_FINETUNE_SPEC)
    for key, value in spec_changes.items():
        if isinstance(value, dict) and isinstance(spec.get(key), dict):
            spec[key].update(value)
        else:
            spec[key] = value
    return {"apiVersion": "sdxl.io/v1alpha1", "kind": "SDXLFineTune",
            "metadata": {"name": name, "namespace": NAMESPACE}, "spec": spec}


def _deployment(name: str, fine_tune: str) -> dict[str, Any]:
    """An SDXLDeployment serving SDXLFineTune ``fine_tune`` on CPU."""
    return {"apiVersion": "sdxl.io/v1alpha1", "kind": "SDXLDeployment",
            "metadata": {"name": name, "namespace": NAMESPACE},
            "spec": {"fineTune": fine_tune, **copy.deepcopy(CPU_DEPLOYMENT_SPEC)}}


@pytest.fixture
def make_finetune() -> Callable[..., dict[str, Any]]:
    return _finetune


@pytest.fixture
def make_deployment() -> Callable[[str, str], dict[str, Any]]:
    return _deployment


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def sandbox(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Sandbox]:
    """One sandbox for the module; every process it started is gone afterwards."""
    workdir: Path = tmp_path_factory.mktemp("sandbox")
    async with Sandbox(workdir, threads=1, status_interval_seconds=0.5, poll_seconds=0.25) as running:
        yield running
    assert not running.local_processes()
