"""The CRDs' defaults are the contract's defaults, and the workloads' spec loaders use the same ones.

The apiserver fills defaults from the CRD; the trainer and the compile/serve workloads fill them from
their own dataclasses when run on a bare manifest (`sdxl-workload train --spec finetune.yaml`). A run
must not depend on which of the two filled a field, so both are compared here, field by field.
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
        "snrGamma": 5.0, "noiseOffset": 0.0, "maxGradNorm": 1.0, "seed": 42, "checkpointEvery": 250,
        "crop": "center", "randomFlip": True,
    },
    "validation": {"prompts": [], "every": 0, "numInferenceSteps": 25, "guidanceScale": 5.0, "seed": 0},
    "resources": {"gpus": 1, "cpu": "8", "memory": "32Gi", "nodeSelector": {}, "tolerations": []},
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
    assert spec["autoscaling"] == {"maxReplicas": 3, "minReplicas": 1, "targetCPUUtilizationPercentage": 70}


def test_crd_defaults_match_the_trainers_spec_loader(crd_validation: ModuleType) -> None:
    """FineTuneSpec.from_dict on a minimal spec must fill exactly what the apiserver fills."""
    from sdxl_workloads import finetune_spec as module

    crd_spec = _defaulted_spec(crd_validation, FINETUNE_CRD, "SDXLFineTune", dict(FINETUNE_REQUIRED))
    loaded_minimal = module.FineTuneSpec.from_dict(dict(FINETUNE_REQUIRED))
    assert _differences(crd_spec, loaded_minimal, "spec") == []
    # Reading back the apiserver's fully defaulted spec gives the same typed spec.
    assert module.FineTuneSpec.from_dict(crd_spec) == loaded_minimal


def test_crd_defaults_match_the_deployment_spec_loader(crd_validation: ModuleType) -> None:
    """The compile/serve workloads' DeploymentSpec fills the same defaults as the CRD."""
    from sdxl_workloads.deployment_spec import DeploymentSpec, NeuronSettings

    crd_spec = _defaulted_spec(crd_validation, DEPLOYMENT_CRD, "SDXLDeployment",
                               {"fineTune": "alice-v1", "neuron": {}})
    loaded_minimal = DeploymentSpec.from_dict({"fineTune": "alice-v1"})
    # DeploymentSpec carries only what compile/serve use; compare those fields.
    shared = {key: crd_spec[key] for key in ("fineTune", "accelerator", "loraScale", "neuron")}
    assert _differences(shared, loaded_minimal, "spec") == []
    assert DeploymentSpec.from_dict(crd_spec) == loaded_minimal
    assert _differences(NEURON_CONTRACT_DEFAULTS, NeuronSettings(), "spec.neuron") == []


# Strings both pattern checks must treat alike (plus each field's default): quantities, URIs, names.
PATTERN_PROBES = ("8", "500m", "32Gi", "1.5", ".5", "+1", "-1", "1e3", "8 Gi", "Gi", "", "abc", "main",
                  "v1.0/x", "to_out.0", "refs pr/1", "a" * 300)


def _same_language(trainer_pattern: str | None, crd_pattern: str | None, default: Any) -> bool:
    """The trainer full-matches its patterns; the CRD anchors them with ^...$. Compare what they accept."""
    if trainer_pattern is None or crd_pattern is None:
        return trainer_pattern is crd_pattern
    probes = [*PATTERN_PROBES, *([default] if isinstance(default, str) else [])]
    return all(bool(re.fullmatch(trainer_pattern, p)) == bool(re.search(crd_pattern, p)) for p in probes)


def _pattern_pair(trainer: str | None, crd: str | None, field: Any) -> tuple[Any, Any]:
    """(a, b) that compare equal exactly when the two patterns accept the same probe strings."""
    default = field.default if field is not None else None
    if _same_language(trainer, crd, default):
        return ("same", "same")
    return (trainer, crd)


def _bound_differences(cls: type, node: dict[str, Any], path: str, rule_of: Any, camel: Any) -> list[str]:
    """Where the trainer's field rules (typed_spec.Rule) and the CRD's schema bounds disagree."""
    import typing

    problems = []
    hints = typing.get_type_hints(cls)
    declared = set(node.get("properties", {}))
    for field in dataclasses.fields(cls):
        key = camel(field.name)
        where = f"{path}.{key}"
        declared.discard(key)
        child = node.get("properties", {}).get(key)
        if child is None:
            problems.append(f"{where}: the trainer reads it, the CRD does not declare it")
            continue
        if isinstance(hints[field.name], type) and dataclasses.is_dataclass(hints[field.name]):
            problems.extend(_bound_differences(hints[field.name], child, where, rule_of, camel))
            continue
        rule = rule_of(field)
        kind = child["type"]
        if kind in ("integer", "number"):
            pairs = {"low": (rule.low, child.get("minimum")), "high": (rule.high, child.get("maximum")),
                     "low_exclusive": (rule.low_exclusive, child.get("exclusiveMinimum", False)),
                     "multiple_of": (rule.multiple_of, child.get("multipleOf"))}
        elif kind == "string":
            pairs = {"low": (rule.low, child.get("minLength")), "high": (rule.high, child.get("maxLength")),
                     "choices": (list(rule.choices) if rule.choices else None, child.get("enum")),
                     "pattern": _pattern_pair(rule.pattern, child.get("pattern"), field)}
        elif kind == "array":
            items = child["items"]
            pairs = {"low": (rule.low, child.get("minItems")), "high": (rule.high, child.get("maxItems"))}
            if items["type"] == "string":
                pairs["item_high"] = (rule.item_high, items.get("maxLength"))
                pairs["pattern"] = _pattern_pair(rule.pattern, items.get("pattern"), None)
        elif kind == "object":  # a map of strings (nodeSelector)
            pairs = {"high": (rule.high, child.get("maxProperties")),
                     "item_high": (rule.item_high, child["additionalProperties"].get("maxLength"))}
        else:
            pairs = {}
        for name, (trainer_value, crd_value) in pairs.items():
            if trainer_value != crd_value:
                problems.append(f"{where}: trainer {name}={trainer_value!r}, CRD {crd_value!r}")
    problems.extend(f"{path}.{key}: the CRD declares it, the trainer does not read it" for key in sorted(declared))
    return problems


def test_crd_bounds_match_the_trainers_field_rules(crd_validation: ModuleType) -> None:
    """Same limits on both sides: a spec the apiserver accepts is one the trainer accepts, and back."""
    from sdxl_workloads import finetune_spec as module
    from sdxl_workloads import typed_spec

    spec_schema = crd_validation.load_crd(FINETUNE_CRD).schema["properties"]["spec"]
    problems = _bound_differences(module.FineTuneSpec, spec_schema, "spec",
                                  lambda f: f.metadata.get(typed_spec._RULE, typed_spec.Rule()), typed_spec.camel)
    assert problems == []


@pytest.mark.parametrize("example", ["finetune.yaml", "finetune-tiny.yaml", "deployment-neuron.yaml",
                                     "deployment-nvidia.yaml", "deployment-cpu.yaml"])
def test_examples_load_with_the_workloads_spec_loaders(crd_validation: ModuleType, example: str) -> None:
    """As written (`sdxl-workload train --spec example.yaml`) and as the apiserver stores them."""
    from sdxl_workloads.deployment_spec import DeploymentSpec
    from sdxl_workloads.finetune_spec import FineTuneSpec

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
