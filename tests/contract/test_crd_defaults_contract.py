"""The CRDs' defaults are the contract's defaults, and the workloads' spec loaders use the same ones.

The apiserver fills defaults from the CRD; the workloads fill them when run on a bare manifest
(`sdxl-workload train --spec finetune.yaml`): the trainer from the CRD itself (sdxl_contract), the
compile/serve workloads from their DeploymentSpec. A run must not depend on which of them filled a
field, so the results are compared here, field by field.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
FINETUNE_CRD = REPO_ROOT / "crds" / "sdxlfinetunes.sdxl.io.yaml"
DEPLOYMENT_CRD = REPO_ROOT / "crds" / "sdxldeployments.sdxl.io.yaml"

# spec.scheduling of both kinds: no affinity and no priority class unless asked for.
SCHEDULING_CONTRACT_DEFAULTS: dict[str, Any] = {"topologySpreadConstraints": [], "podLabels": {}, "podAnnotations": {}}

# The SDXLFineTune.spec defaults of the project contract, transcribed from its table. Optional fields
# without a default stay absent: vae, classPrompt, priorPreservation.classImages and output (the
# operator picks the artifact store).
FINETUNE_CONTRACT_DEFAULTS: dict[str, Any] = {
    "baseModel": "stabilityai/stable-diffusion-xl-base-1.0",
    "baseModelRevision": "main",
    "priorPreservation": {"enabled": False, "numClassImages": 100, "lossWeight": 1.0},
    "training": {
        "maxSteps": 500, "learningRate": 1e-4, "textEncoderLearningRate": 5e-6, "rank": 4, "alpha": 4,
        "targetModules": ["to_q", "to_k", "to_v", "to_out.0"], "resolution": 1024, "batchSize": 1,
        "gradientAccumulation": 4, "trainTextEncoder": False, "mixedPrecision": "bf16",
        "gradientCheckpointing": True, "optimizer": "adamw", "lrScheduler": "constant", "lrWarmupSteps": 0,
        "snrGamma": 5.0, "noiseOffset": 0.0, "maxGradNorm": 1.0, "weightDecay": 1e-4,
        "textEncoderWeightDecay": 1e-3, "seed": 42, "checkpointEvery": 250,
        "crop": "center", "randomFlip": True,
    },
    "validation": {"prompts": [], "every": 0, "numInferenceSteps": 25, "guidanceScale": 5.0, "seed": 0},
    "quality": {"enabled": True, "face": True},
    "resources": {"gpus": 1, "cpu": "8", "memory": "32Gi", "nodeSelector": {}, "tolerations": []},
    "scheduling": SCHEDULING_CONTRACT_DEFAULTS,
}
FINETUNE_REQUIRED = {"instanceImages": "builtin:sample-subject", "instancePrompt": "a photo of sks person"}

# The SDXLDeployment.spec defaults of the contract. `neuron`, `auth` and `autoscaling` are optional
# objects (neuron is forbidden off Neuron), so their inner defaults apply once the object is given.
DEPLOYMENT_CONTRACT_DEFAULTS: dict[str, Any] = {
    "accelerator": "neuron",
    "loraScale": 1.0,
    "replicas": 1,
    "server": {"maxBatch": 1, "queueSize": 8, "requestTimeoutSeconds": 300},
    "resources": {"nodeSelector": {}, "tolerations": []},
    "scheduling": SCHEDULING_CONTRACT_DEFAULTS,
}
NEURON_CONTRACT_DEFAULTS = {"batchSize": 1, "height": 1024, "width": 1024, "numImagesPerPrompt": 1,
                            "autoCastType": "bf16", "instanceType": "inf2.8xlarge"}


def _manifest(kind: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "sdxl.io/v1alpha1", "kind": kind, "metadata": {"name": "defaults"}, "spec": spec}


def _defaulted_spec(crd_validation: ModuleType, crd: Path, kind: str, spec: dict[str, Any]) -> dict[str, Any]:
    manifest = _manifest(kind, spec)
    assert crd_validation.validate_against_crd(manifest, crd) == []
    defaulted: dict[str, Any] = crd_validation.apply_crd_defaults(manifest, crd)["spec"]
    return defaulted


def _snake(name: str) -> str:
    return re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", name).lower()


def _differences(crd_value: Any, loaded: Any, path: str) -> list[str]:
    """Where a loader's typed spec disagrees with the CRD-defaulted dict (camelCase -> snake_case)."""
    if isinstance(crd_value, dict) and dataclasses.is_dataclass(loaded):
        problems = []
        for key, value in crd_value.items():
            attribute = _snake(key)
            if not hasattr(loaded, attribute):
                problems.append(f"{path}.{key}: the loader has no field {attribute}")
                continue
            problems.extend(_differences(value, getattr(loaded, attribute), f"{path}.{key}"))
        return problems
    if isinstance(loaded, tuple):
        loaded = list(loaded)
    if isinstance(crd_value, bool) or isinstance(loaded, bool):
        same = type(crd_value) is type(loaded) and crd_value == loaded  # True == 1 is no agreement
    else:
        same = crd_value == loaded
    return [] if same else [f"{path}: CRD default {crd_value!r}, loader default {loaded!r}"]


def test_finetune_crd_defaults_are_the_contract_table(crd_validation: ModuleType) -> None:
    spec = _defaulted_spec(crd_validation, FINETUNE_CRD, "SDXLFineTune", dict(FINETUNE_REQUIRED))
    assert spec == {**FINETUNE_REQUIRED, **FINETUNE_CONTRACT_DEFAULTS}


def test_deployment_crd_defaults_are_the_contract_table(crd_validation: ModuleType) -> None:
    spec = _defaulted_spec(crd_validation, DEPLOYMENT_CRD, "SDXLDeployment", {"fineTune": "alice-v1"})
    assert spec == {"fineTune": "alice-v1", **DEPLOYMENT_CONTRACT_DEFAULTS}


def test_deployment_optional_objects_get_their_contract_defaults(crd_validation: ModuleType) -> None:
    spec = _defaulted_spec(crd_validation, DEPLOYMENT_CRD, "SDXLDeployment", {
        "fineTune": "alice-v1", "neuron": {}, "auth": {"apiKeySecret": "key"}, "autoscaling": {"maxReplicas": 3}})
    assert spec["neuron"] == NEURON_CONTRACT_DEFAULTS
    assert spec["auth"] == {"apiKeySecret": "key", "apiKeySecretKey": "api-key"}
    assert spec["autoscaling"] == {"maxReplicas": 3, "minReplicas": 1, "metric": "cpu",
                                   "targetCPUUtilizationPercentage": 70}


def test_crd_defaults_match_the_trainers_spec_loader(crd_validation: ModuleType) -> None:
    """FineTuneSpec.from_dict on a minimal spec must fill exactly what the apiserver fills."""
    from sdxl_workloads.spec import finetune_spec as module

    crd_spec = _defaulted_spec(crd_validation, FINETUNE_CRD, "SDXLFineTune", dict(FINETUNE_REQUIRED))
    loaded_minimal = module.load_finetune_spec(dict(FINETUNE_REQUIRED))
    assert _differences(crd_spec, loaded_minimal, "spec") == []
    # Reading back the apiserver's fully defaulted spec gives the same typed spec.
    assert module.load_finetune_spec(crd_spec) == loaded_minimal


def test_crd_defaults_match_the_deployment_spec_loader(crd_validation: ModuleType) -> None:
    """The compile/serve workloads' DeploymentSpec fills the same defaults as the CRD."""
    from sdxl_workloads.spec.deployment_spec import NeuronSettings, load_deployment_spec

    crd_spec = _defaulted_spec(crd_validation, DEPLOYMENT_CRD, "SDXLDeployment",
                               {"fineTune": "alice-v1", "neuron": {}})
    loaded_minimal = load_deployment_spec({"fineTune": "alice-v1"})
    shared = {key: crd_spec[key] for key in ("fineTune", "accelerator", "loraScale", "neuron")}
    assert _differences(shared, loaded_minimal, "spec") == []
    assert load_deployment_spec(crd_spec) == loaded_minimal
    assert _differences(NEURON_CONTRACT_DEFAULTS, NeuronSettings.crd_defaults(), "spec.neuron") == []


@pytest.mark.parametrize("example", ["finetune.yaml", "finetune-tiny.yaml", "deployment-neuron.yaml",
                                     "deployment-nvidia.yaml", "deployment-cpu.yaml"])
def test_examples_load_with_the_workloads_spec_loaders(crd_validation: ModuleType, example: str) -> None:
    """As written (`sdxl-workload train --spec example.yaml`) and as the apiserver stores them."""
    from sdxl_workloads.spec.deployment_spec import DeploymentSpec
    from sdxl_workloads.spec.finetune_spec import FineTuneSpec

    manifest = yaml.safe_load((REPO_ROOT / "crds" / "examples" / example).read_text(encoding="utf-8"))
    loader = FineTuneSpec if manifest["kind"] == "SDXLFineTune" else DeploymentSpec
    crd = FINETUNE_CRD if manifest["kind"] == "SDXLFineTune" else DEPLOYMENT_CRD
    as_written = loader.from_dict(manifest["spec"])
    as_stored = loader.from_dict(crd_validation.apply_crd_defaults(manifest, crd)["spec"])
    assert as_written == as_stored


def test_difference_finder_reports_a_disagreeing_default() -> None:
    """Guards the comparison above: it must see a changed default, a missing field and bool-vs-int."""

    @dataclasses.dataclass
    class Training:
        max_steps: int = 500
        random_flip: int = 1

    @dataclasses.dataclass
    class Spec:
        training: Training = dataclasses.field(default_factory=Training)

    problems = _differences({"training": {"maxSteps": 400, "randomFlip": True, "seed": 42}}, Spec(), "spec")
    assert problems == [
        "spec.training.maxSteps: CRD default 400, loader default 500",
        "spec.training.randomFlip: CRD default True, loader default 1",
        "spec.training.seed: the loader has no field seed",
    ]
