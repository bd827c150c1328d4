"""values.schema.json stops `helm install` on bad values, naming the field that is wrong."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

# (values, the JSON path Helm must name, a word of the reason)
BAD_VALUES: list[tuple[dict[str, Any], str, str]] = [
    ({"bogus": True}, "at ''", "bogus"),
    ({"images": {"operator": {"pullPolicy": "Sometimes"}}}, "/images/operator/pullPolicy", "one of"),
    ({"images": {"train": {"repository": "Registry.Example.com/GPU"}}}, "/images/train/repository", "pattern"),
    ({"images": {"neuron": {"tag": "has space"}}}, "/images/neuron/tag", "pattern"),
    ({"images": {"cpu": {"digest": "sha256:short"}}}, "/images/cpu/digest", "pattern"),
    ({"images": {"nvidia": {"registry": "docker.io"}}}, "/images/nvidia", "registry"),
    ({"images": {"workloadPullPolicy": "always"}}, "/images/workloadPullPolicy", "one of"),
    ({"nodePools": {"training": {"nodeSelector": {"gpu": 1}}}}, "/nodePools/training/nodeSelector/gpu", "string"),
    ({"nodePools": {"gpuServing": {"nodeSelector": {"bad key!": "x"}}}}, "/nodePools/gpuServing/nodeSelector", "bad key!"),
    ({"nodePools": {"neuronServing": {"tolerations": [{"key": "a", "operator": "Maybe"}]}}},
     "/nodePools/neuronServing/tolerations/0/operator", "one of"),
    ({"nodePools": {"training": {"tolerations": [{"key": "a", "efect": "NoSchedule"}]}}},
     "/nodePools/training/tolerations/0", "efect"),
    ({"nodePools": {"inference": {}}}, "/nodePools", "inference"),
    ({"compile": {"onNeuron": "yes"}}, "/compile/onNeuron", "boolean"),
    ({"compile": {"cpuPool": {"tolerations": {"key": "x"}}}}, "/compile/cpuPool/tolerations", "array"),
    ({"artifactStore": "gs://bucket/prefix"}, "/artifactStore", "pattern"),
    ({"artifactStore": "s3://"}, "/artifactStore", "pattern"),
    ({"hfTokenSecret": "HF_TOKEN"}, "/hfTokenSecret", "pattern"),
    ({"workloadServiceAccount": {"name": "Not Valid"}}, "/workloadServiceAccount/name", "pattern"),
    ({"workloadServiceAccount": {"annotations": {"eks.amazonaws.com/role-arn": 123}}},
     "/workloadServiceAccount/annotations/eks.amazonaws.com~1role-arn", "string"),
    ({"watchNamespaces": "team-a"}, "/watchNamespaces", "array"),
    ({"watchNamespaces": ["Team_A"]}, "/watchNamespaces/0", "pattern"),
    ({"watchNamespaces": ["a", "a"]}, "/watchNamespaces", "equal"),
    ({"deadlines": {"trainSeconds": "1d"}}, "/deadlines/trainSeconds", "integer"),
    ({"deadlines": {"compileSeconds": 5}}, "/deadlines/compileSeconds", "minimum"),
    ({"deadlines": {"trainBackoffLimit": -1}}, "/deadlines/trainBackoffLimit", "minimum"),
    ({"deadlines": {"pendingGraceSeconds": 0}}, "/deadlines/pendingGraceSeconds", "minimum"),
    ({"operator": {"logLevel": "trace"}}, "/operator/logLevel", "one of"),
    ({"operator": {"logFormat": "yaml"}}, "/operator/logFormat", "one of"),
    ({"operator": {"resources": {"limits": {"memory": "lots"}}}}, "/operator/resources/limits/memory", "pattern"),
    ({"operator": {"resources": {"request": {"cpu": "1"}}}}, "/operator/resources", "request"),
    ({"operator": {"replicas": 0}}, "/operator/replicas", "minimum"),
    ({"images": {"workloadPullSecrets": ["Reg Cred"]}}, "/images/workloadPullSecrets/0", "pattern"),
    ({"placement": {"allowedPriorityClasses": "batch-low"}}, "/placement/allowedPriorityClasses", "array"),
    ({"operator": {"metricsPort": 8080}}, "/operator/metricsPort", "not"),
    ({"serviceMonitor": {"enabled": "true"}}, "/serviceMonitor/enabled", "boolean"),
    ({"serviceMonitor": {"interval": "30 seconds"}}, "/serviceMonitor/interval", "pattern"),
]


@pytest.mark.parametrize(("values", "field", "reason"), BAD_VALUES, ids=[f for _, f, _ in BAD_VALUES])
def test_schema_rejects_bad_values(render: Callable[..., Any], values: dict[str, Any], field: str, reason: str) -> None:
    result = render(values)
    assert result.returncode != 0, f"{values} was accepted"
    assert "don't meet the specifications of the schema" in result.stderr
    message = next((line for line in result.stderr.splitlines() if field in line), None)
    assert message is not None, f"{field} not named in: {result.stderr}"
    assert reason in message, message


@pytest.mark.parametrize(
    "values",
    [
        {"artifactStore": "s3://my-bucket"},
        {"artifactStore": "pvc://shared-claim/sdxl/store"},
        {"images": {"train": {"repository": "123456789012.dkr.ecr.us-east-1.amazonaws.com/sdxl-gpu",
                              "digest": "sha256:" + "0" * 64}}},
        {"nodePools": {"training": {"tolerations": [{"key": "spot", "operator": "Equal", "value": "true",
                                                     "effect": "NoExecute", "tolerationSeconds": 30}]}}},
        {"operator": {"resources": {"requests": {"cpu": 0.5, "memory": "1Gi"}}}},
        {"hfTokenSecret": "hf-token", "watchNamespaces": ["a", "b-2"]},
    ],
)
def test_schema_accepts_good_values(render: Callable[..., Any], values: dict[str, Any]) -> None:
    """The rules above are not so tight that ordinary settings fail."""
    result = render(values)
    assert result.returncode == 0, result.stderr
