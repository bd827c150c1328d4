"""The chart's tenancy values reach the operator: per-namespace identities, allowed store prefixes,
reserved namespaces, placement keys, the photo limit and the servers' NetworkPolicy. The chart's
defaults are the operator's own (one list an administrator reads in values.yaml)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from sdxl_operator.core.settings import OperatorSettings

RELEASE_NAMESPACE = "sdxl-system"


def _settings(result: Any) -> OperatorSettings:
    container = result.one("Deployment")["spec"]["template"]["spec"]["containers"][0]
    return OperatorSettings.from_env({item["name"]: item["value"] for item in container["env"] if "value" in item})


def test_the_charts_defaults_are_the_operators(render: Callable[..., Any]) -> None:
    settings, defaults = _settings(render()), OperatorSettings()
    assert settings.reserved_namespaces == defaults.reserved_namespaces == ("kube-*",)
    assert settings.allowed_toleration_keys == defaults.allowed_toleration_keys
    assert settings.allowed_node_selector_keys == defaults.allowed_node_selector_keys
    assert settings.max_images == defaults.max_images == 1000
    assert settings.network_policy is True and settings.network_policy_sources == ()
    assert settings.shared_compile_cache is defaults.shared_compile_cache is True
    assert settings.tenancy_allowed_prefixes == {}


def test_tenancy_values_reach_the_operator(render: Callable[..., Any]) -> None:
    ingress = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}}}
    settings = _settings(render({
        "tenancy": {"allowedPrefixes": {"team-a": ["s3://sdxl-artifacts/shared-models/"]},
                    "reservedNamespaces": ["kube-*", "istio-system"], "sharedCompileCache": False},
        "placement": {"allowedTolerationKeys": ["nvidia.com/gpu"], "allowedNodeSelectorKeys": []},
        "limits": {"maxImages": 200},
        "networkPolicy": {"enabled": False, "extraSources": [ingress]},
        "workloadServiceAccount": {"namespaceAnnotations": {"team-a": {"eks.amazonaws.com/role-arn": "arn:a"}}},
    }))
    assert settings.tenancy_allowed_prefixes == {"team-a": ("s3://sdxl-artifacts/shared-models/",)}
    assert settings.reserved_namespaces == ("kube-*", "istio-system")
    assert settings.allowed_toleration_keys == ("nvidia.com/gpu",) and settings.allowed_node_selector_keys == ()
    assert settings.max_images == 200 and settings.shared_compile_cache is False
    assert settings.network_policy is False and settings.network_policy_sources == (ingress,)
    assert settings.workload_service_account_namespace_annotations == {"team-a": {"eks.amazonaws.com/role-arn": "arn:a"}}


def test_each_namespace_account_the_chart_creates_carries_its_own_role(render: Callable[..., Any]) -> None:
    shared, own = "arn:aws:iam::123456789012:role/sdxl-shared", "arn:aws:iam::123456789012:role/sdxl-team-a"
    result = render({"watchNamespaces": ["team-a", "team-b"], "workloadServiceAccount": {
        "annotations": {"eks.amazonaws.com/role-arn": shared, "team": "ml"},
        "namespaceAnnotations": {"team-a": {"eks.amazonaws.com/role-arn": own}}}})
    accounts = {sa["metadata"]["namespace"]: sa["metadata"].get("annotations") for sa in result.of_kind("ServiceAccount")
                if sa["metadata"]["labels"]["app.kubernetes.io/component"] == "workload"}
    assert accounts == {"team-a": {"eks.amazonaws.com/role-arn": own, "team": "ml"},
                        "team-b": {"eks.amazonaws.com/role-arn": shared, "team": "ml"}}


@pytest.mark.parametrize(
    ("values", "field"),
    [
        ({"tenancy": {"allowedPrefixes": {"team-a": ["shared-models/"]}}}, "/tenancy/allowedPrefixes/team-a/0"),
        ({"limits": {"maxImages": 0}}, "/limits/maxImages"),
        ({"networkPolicy": {"extraSources": [{"namespace": "x"}]}}, "/networkPolicy/extraSources/0"),
        ({"placement": {"allowedTolerationKeys": [""]}}, "/placement/allowedTolerationKeys/0"),
    ],
)
def test_the_schema_refuses_malformed_tenancy_values(render: Callable[..., Any], values: dict[str, Any],
                                                     field: str) -> None:
    result = render(values)
    assert result.returncode != 0, f"{values} was accepted"
    assert field in result.stderr, result.stderr
