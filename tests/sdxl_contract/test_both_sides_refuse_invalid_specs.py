"""The operator's validators and the workloads' spec loaders refuse what the API server refuses.

crds/examples/invalid/*.yaml are applied to a real API server in
tests/e2e/test_e2e_kubernetes.py::test_every_invalid_example...; here the same files, and a few more
specs, go to both sides, which ask the same CRD (sdxl_contract.schema) and so cannot disagree.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from sdxl_operator.spec.deployment_validation import validate_deployment_spec
from sdxl_operator.spec.finetune_validation import validate_finetune_spec
from sdxl_workloads.protocol import WorkloadError
from sdxl_workloads.spec.deployment_spec import load_deployment_spec
from sdxl_workloads.spec.finetune_spec import load_finetune_spec

INVALID = sorted((Path(__file__).resolve().parents[2] / "crds" / "examples" / "invalid").glob("*.yaml"))
FT = {"instanceImages": "s3://photos/alice", "instancePrompt": "a photo of sks person"}


def _spec_examples(kind: str) -> list[Any]:
    cases = []
    for path in INVALID:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
        name = document["metadata"]["name"]
        if document.get("kind") == kind and name == name.lower():  # metadata errors are the API server's
            cases.append(pytest.param(document.get("spec"), id=path.stem))
    return cases


@pytest.mark.parametrize("spec", [
    *_spec_examples("SDXLFineTune"),
    pytest.param({**FT, "training": {"rank": 0}}, id="rank-zero"),
    pytest.param({**FT, "output": "builtin:tiny"}, id="builtin-output"),
    pytest.param({**FT, "resources": {"memory": "lots"}}, id="memory-not-a-quantity"),
    pytest.param({**FT, "validation": {"prompts": [""]}}, id="empty-validation-prompt"),
])
def test_operator_and_trainer_refuse_the_same_finetune_specs(spec: Any) -> None:
    operator_errors = validate_finetune_spec(spec)
    assert operator_errors
    with pytest.raises(WorkloadError) as refused:
        load_finetune_spec(spec)
    assert refused.value.reason == "InvalidInput"
    assert refused.value.message.split(":")[0] == operator_errors[0].split(":")[0], "both name the same field"


@pytest.mark.parametrize("spec", [
    *_spec_examples("SDXLDeployment"),
    pytest.param({"fineTune": "a", "auth": {"apiKeySecret": "k", "apiKeySecretKey": ".."}}, id="secret-key-dotdot"),
    pytest.param({"fineTune": "a", "auth": {"apiKeySecret": "k", "apiKeySecretKey": "."}}, id="secret-key-dot"),
])
def test_operator_and_workloads_refuse_the_same_deployment_specs(spec: Any) -> None:
    operator_errors = validate_deployment_spec(spec)
    assert operator_errors
    with pytest.raises(WorkloadError) as refused:
        load_deployment_spec(spec)
    assert refused.value.reason == "InvalidInput"
    assert refused.value.message.split(":")[0] == operator_errors[0].split(":")[0], "both name the same field"
