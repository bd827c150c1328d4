"""The chart's keda values reach the operator: off by default (HPAs), on with the Prometheus server KEDA's
triggers query, refused by the schema when turned on without one; the ScaledObject rule is granted either
way (switching KEDA off must be able to remove the ScaledObjects the operator made)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sdxl_operator.core.settings import OperatorSettings

PROMETHEUS = "http://prometheus-operated.monitoring.svc:9090"
SCALED_OBJECT_RULE = {"apiGroups": ["keda.sh"], "resources": ["scaledobjects"],
                      "verbs": ["get", "create", "patch", "delete"]}


def _settings(result: Any) -> OperatorSettings:
    container = result.one("Deployment")["spec"]["template"]["spec"]["containers"][0]
    return OperatorSettings.from_env({item["name"]: item["value"] for item in container["env"] if "value" in item})


def test_keda_is_off_by_default(render: Callable[..., Any]) -> None:
    result = render()
    settings = _settings(result)
    assert settings.keda is False and settings.keda_prometheus_address is None
    assert SCALED_OBJECT_RULE in result.one("ClusterRole")["rules"]


def test_keda_on_hands_the_operator_its_prometheus_server(render: Callable[..., Any]) -> None:
    result = render({"keda": {"enabled": True, "prometheusServerAddress": PROMETHEUS}})
    assert result.returncode == 0, result.stderr
    settings = _settings(result)
    assert settings.keda is True and settings.keda_prometheus_address == PROMETHEUS
    assert SCALED_OBJECT_RULE in result.one("ClusterRole")["rules"]


def test_keda_namespaced_mode_grants_scaled_objects_in_each_role(render: Callable[..., Any]) -> None:
    result = render({"keda": {"enabled": True, "prometheusServerAddress": PROMETHEUS},
                     "watchNamespaces": ["team-a", "team-b"]})
    assert all(SCALED_OBJECT_RULE in role["rules"] for role in result.of_kind("Role"))
    assert len(result.of_kind("Role")) == 2


def test_schema_refuses_keda_without_a_prometheus_server(render: Callable[..., Any]) -> None:
    result = render({"keda": {"enabled": True}})
    assert result.returncode != 0, "keda.enabled without prometheusServerAddress was accepted"
    assert "prometheusServerAddress" in result.stderr, result.stderr
    bad = render({"keda": {"enabled": True, "prometheusServerAddress": "prometheus:9090"}})
    assert bad.returncode != 0 and "/keda/prometheusServerAddress" in bad.stderr, bad.stderr
