"""Spec validation: field-naming messages from the CRD's own bounds, defaults and rules."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from sdxl_operator.spec.finetune_validation import validate_finetune_spec
from sdxl_operator.spec.resolved_spec import default_output, resolve_finetune_spec

CRD = Path(__file__).resolve().parents[3] / "crds" / "sdxlfinetunes.sdxl.io.yaml"
VALID: dict[str, Any] = {"instanceImages": "s3://photos/alice", "instancePrompt": "a photo of sks person"}


def _with(path: str, value: Any) -> dict[str, Any]:
    spec = copy.deepcopy(VALID)
    *parents, leaf = path.split(".")
    node = spec
    for key in parents:
        node = node.setdefault(key, {})
    node[leaf] = value
    return spec


def test_minimal_and_example_specs_are_valid() -> None:
    assert validate_finetune_spec(VALID) == []
    for example in sorted((CRD.parent / "examples").glob("finetune*.yaml")):
        document = yaml.safe_load(example.read_text())
        assert validate_finetune_spec(document["spec"]) == [], example.name


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        ("training.rank", 0, "spec.training.rank: must be between 1 and 256, got 0"),
        ("training.rank", 257, "spec.training.rank: must be between 1 and 256, got 257"),
        ("training.maxSteps", -5, "spec.training.maxSteps: must be between 1 and 100000, got -5"),
        ("training.maxSteps", 1.5, "spec.training.maxSteps: must be an integer, got a number (1.5)"),
        ("training.learningRate", 0, "spec.training.learningRate: must be greater than 0 and at most 1, got 0"),
        ("training.resolution", 1020, "spec.training.resolution: must be a multiple of 8 (the VAE downsamples by 8), got 1020"),
        ("training.optimizer", "sgd", "spec.training.optimizer: must be one of adamw, adamw8bit, prodigy, got 'sgd'"),
        ("training.trainTextEncoder", "yes", "spec.training.trainTextEncoder: must be true or false, got a string ('yes')"),
        ("training.targetModules", [], "spec.training.targetModules: must not be empty"),
        ("training.targetModules", ["to q"], "spec.training.targetModules[0]: must match"),
        ("training.bogus", 1, "spec.training.bogus: unknown field"),
        ("instancePrompt", "x" * 1001, "spec.instancePrompt: must have at most 1000 characters, got 1001"),
        ("instancePrompt", "", "spec.instancePrompt: must not be empty"),
        ("baseModel", "builtin:huge", "spec.baseModel: the embedded models are builtin:tiny, builtin:tiny-mid and builtin:world"),
        ("instanceImages", "s3://", "spec.instanceImages: an s3:// URI names a bucket"),
        ("output", "pvc://Bad_Claim/x", "spec.output: a pvc:// URI names a PersistentVolumeClaim"),
        ("output", "builtin:tiny", "spec.output: output must be writable storage"),
        ("vae", "builtin:tiny", "spec.vae: there is no embedded VAE"),
        ("resources.cpu", 8, 'spec.resources.cpu: must be a string, got an integer (8) (quote it: "8")'),
        ("resources.memory", "lots", "spec.resources.memory: must be a Kubernetes quantity such as \"8\", \"500m\" or \"32Gi\", got 'lots'"),
        ("resources.gpus", 9, "spec.resources.gpus: must be between 0 and 8, got 9"),
        ("resources.nodeSelector", {"gpu": 1}, "spec.resources.nodeSelector.gpu: must be a string, got an integer (1)"),
        ("resources.tolerations", [{"operator": "Maybe"}], "spec.resources.tolerations[0].operator: must be one of"),
        ("validation.prompts", ["p"] * 17, "spec.validation.prompts: must have at most 16 items, got 17"),
        ("priorPreservation", "on", "spec.priorPreservation: must be a mapping of fields, got a string ('on')"),
    ],
)
def test_invalid_values_name_the_field(path: str, value: Any, message: str) -> None:
    errors = validate_finetune_spec(_with(path, value))
    assert any(error.startswith(message) for error in errors), errors


def test_required_fields_and_cross_field_rule() -> None:
    assert validate_finetune_spec({}) == ["spec.instanceImages: required field is missing",
                                         "spec.instancePrompt: required field is missing"]
    assert validate_finetune_spec(None) == ["spec: must be an object with at least instanceImages and instancePrompt"]
    errors = validate_finetune_spec(_with("priorPreservation", {"enabled": True}))
    assert errors and errors[0].startswith("spec.classPrompt: required when spec.priorPreservation.enabled is true")
    assert validate_finetune_spec({**_with("priorPreservation", {"enabled": True}), "classPrompt": "a person"}) == []


def test_every_invalid_finetune_example_is_refused() -> None:
    for example in sorted((CRD.parent / "examples" / "invalid").glob("*.yaml")):
        document = yaml.safe_load(example.read_text())
        if document.get("kind") != "SDXLFineTune" or document["metadata"]["name"] != document["metadata"]["name"].lower():
            continue  # other kinds, and metadata errors, are the API server's to catch
        assert validate_finetune_spec(document.get("spec")), example.name


def test_resolved_spec_fills_defaults_and_output() -> None:
    resolved = resolve_finetune_spec(VALID, name="alice", namespace="team-a", uid="0123456789abcdef",
                                     artifact_store="s3://store/prefix/")
    assert resolved["output"] == "s3://store/prefix/finetunes/team-a/alice/01234567"
    assert resolved["metadata"] == {"name": "alice", "namespace": "team-a", "uid": "0123456789abcdef"}
    assert resolved["baseModel"] == "stabilityai/stable-diffusion-xl-base-1.0"
    assert resolved["training"]["rank"] == 4 and resolved["training"]["targetModules"] == ["to_q", "to_k", "to_v", "to_out.0"]
    assert resolved["priorPreservation"] == {"enabled": False, "numClassImages": 100, "lossWeight": 1.0}
    assert resolved["resources"] == {"gpus": 1, "cpu": "8", "memory": "32Gi", "nodeSelector": {}, "tolerations": []}
    assert "vae" not in resolved and "classPrompt" not in resolved
    assert validate_finetune_spec({k: v for k, v in resolved.items() if k != "metadata"}) == []


def test_resolved_spec_keeps_user_values_and_does_not_mutate_input() -> None:
    spec = _with("training", {"rank": 16})
    spec["output"] = "pvc://results/alice"
    before = copy.deepcopy(spec)
    resolved = resolve_finetune_spec(spec, name="a", namespace="n", uid="u" * 8, artifact_store="s3://s")
    assert spec == before
    assert resolved["training"]["rank"] == 16 and resolved["training"]["alpha"] == 4
    assert resolved["output"] == "pvc://results/alice"
    assert default_output("pvc://c/store", "n", "a", "abcdefgh-1") == "pvc://c/store/finetunes/n/a/abcdefgh"
