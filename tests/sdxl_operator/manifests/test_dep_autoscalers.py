"""The autoscalers of an SDXLDeployment, compared as whole manifests: the HorizontalPodAutoscaler on CPU
or on the server's queue / in-flight gauges (a Pods metric), and the KEDA ScaledObject built instead
when the operator runs with KEDA."""

from __future__ import annotations

import copy
from typing import Any

import kopf
import kubernetes_validate
import pytest

from sdxl_contract.server_metrics import IN_FLIGHT, QUEUE_DEPTH
from sdxl_operator.core.settings import OperatorSettings
from sdxl_operator.handlers.autoscaler_sync import desired_autoscaler
from sdxl_operator.manifests.autoscaler import build_autoscaler
from sdxl_operator.manifests.scaled_object import build_scaled_object
from sdxl_operator.spec.model_source import ModelSource
from sdxl_operator.spec.resolved_deployment_spec import resolve_deployment_spec

UID = "9a8b7c6d-5e4f-3a2b-1c0d-e9f8a7b6c5d4"
PROMETHEUS = "http://prometheus-operated.monitoring.svc:9090"
SOURCE = ModelSource(lora="pvc://sdxl-artifacts/store/finetunes/team-a/alice/lora/pytorch_lora_weights.safetensors",
                     base_model="stabilityai/stable-diffusion-xl-base-1.0", base_revision="main", lora_sha256=None,
                     finetune="alice-v1")
METADATA = {
    "name": "alice", "namespace": "team-a",
    "labels": {"app.kubernetes.io/managed-by": "sdxl-operator", "app.kubernetes.io/name": "sdxl-server",
               "app.kubernetes.io/instance": "alice", "sdxl.io/deployment": "alice"},
    "ownerReferences": [{"controller": True, "blockOwnerDeletion": True, "apiVersion": "sdxl.io/v1alpha1",
                         "kind": "SDXLDeployment", "name": "alice", "uid": UID}],
}
TARGET_REF = {"apiVersion": "apps/v1", "kind": "Deployment", "name": "alice"}


def owner(autoscaling: dict[str, Any] | None) -> dict[str, Any]:
    spec: dict[str, Any] = {"fineTune": "alice-v1", "accelerator": "neuron"}
    if autoscaling is not None:
        spec["autoscaling"] = autoscaling
    return {"apiVersion": "sdxl.io/v1alpha1", "kind": "SDXLDeployment",
            "metadata": {"name": "alice", "namespace": "team-a", "uid": UID, "generation": 1}, "spec": spec}


def resolved(body: dict[str, Any]) -> dict[str, Any]:
    return resolve_deployment_spec(body["spec"], SOURCE, name="alice", namespace="team-a", uid=UID)


def hpa(autoscaling: dict[str, Any] | None) -> dict[str, Any] | None:
    body = owner(autoscaling)
    return build_autoscaler(body, resolved(body))


def scaled_object(autoscaling: dict[str, Any] | None) -> dict[str, Any] | None:
    body = owner(autoscaling)
    return build_scaled_object(body, resolved(body), prometheus_address=PROMETHEUS)


def test_cpu_stays_the_default_hpa() -> None:
    assert hpa({"maxReplicas": 4}) == {
        "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "metadata": METADATA,
        "spec": {"scaleTargetRef": TARGET_REF, "minReplicas": 1, "maxReplicas": 4,
                 "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {
                     "type": "Utilization", "averageUtilization": 70}}}]},
    }


def test_queue_depth_hpa_has_a_pods_metric_on_the_server_gauge() -> None:
    assert hpa({"minReplicas": 2, "maxReplicas": 8, "metric": "queueDepth", "target": 2}) == {
        "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "metadata": METADATA,
        "spec": {"scaleTargetRef": TARGET_REF, "minReplicas": 2, "maxReplicas": 8,
                 "metrics": [{"type": "Pods", "pods": {"metric": {"name": "sdxl_queue_depth"},
                                                       "target": {"type": "AverageValue", "averageValue": "2"}}}]},
    }


@pytest.mark.parametrize(("target", "quantity"), [(0.5, "500m"), (1.25, "1250m"), (3, "3"), (0.001, "1m"),
                                                   (1000, "1000"), (2.0004, "2")])
def test_in_flight_target_is_a_quantity_per_pod(target: float, quantity: str) -> None:
    built = hpa({"maxReplicas": 3, "metric": "inFlight", "target": target})
    assert built is not None
    assert built["spec"]["metrics"] == [{"type": "Pods", "pods": {
        "metric": {"name": IN_FLIGHT}, "target": {"type": "AverageValue", "averageValue": quantity}}}]


def test_queue_depth_scaled_object_has_a_prometheus_trigger() -> None:
    assert scaled_object({"minReplicas": 1, "maxReplicas": 8, "metric": "queueDepth", "target": 2}) == {
        "apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject", "metadata": METADATA,
        "spec": {
            "scaleTargetRef": TARGET_REF, "minReplicaCount": 1, "maxReplicaCount": 8,
            "triggers": [{"type": "prometheus", "metricType": "AverageValue", "metadata": {
                "serverAddress": PROMETHEUS,
                "query": 'sum(sdxl_queue_depth{namespace="team-a",service="alice"})',
                "threshold": "2",
            }}],
        },
    }


def test_in_flight_and_cpu_scaled_objects() -> None:
    in_flight = scaled_object({"maxReplicas": 3, "metric": "inFlight", "target": 0.5})
    assert in_flight is not None
    assert in_flight["spec"]["triggers"] == [{"type": "prometheus", "metricType": "AverageValue", "metadata": {
        "serverAddress": PROMETHEUS, "query": f'sum({IN_FLIGHT}{{namespace="team-a",service="alice"}})',
        "threshold": "0.5"}}]
    cpu = scaled_object({"minReplicas": 2, "maxReplicas": 5, "targetCPUUtilizationPercentage": 60})
    assert cpu is not None
    assert cpu["spec"] == {"scaleTargetRef": TARGET_REF, "minReplicaCount": 2, "maxReplicaCount": 5,
                           "triggers": [{"type": "cpu", "metricType": "Utilization", "metadata": {"value": "60"}}]}


def test_no_autoscaler_of_either_kind_without_spec_autoscaling() -> None:
    assert hpa(None) is None and scaled_object(None) is None


def test_the_operator_setting_chooses_the_kind() -> None:
    body = owner({"maxReplicas": 4, "metric": "queueDepth", "target": 2})
    kind, manifest = desired_autoscaler(body, resolved(body), OperatorSettings())
    assert kind == "HorizontalPodAutoscaler" and manifest == build_autoscaler(body, resolved(body))
    keda = OperatorSettings(keda=True, keda_prometheus_address=PROMETHEUS)
    kind, manifest = desired_autoscaler(body, resolved(body), keda)
    assert kind == "ScaledObject"
    assert manifest == build_scaled_object(body, resolved(body), prometheus_address=PROMETHEUS)


@pytest.mark.parametrize("metric", ["cpu", "queueDepth", "inFlight"])
def test_autoscalers_are_valid_and_adopted_as_kopf_would(metric: str) -> None:
    scaling: dict[str, Any] = {"minReplicas": 1, "maxReplicas": 6, "metric": metric}
    if metric != "cpu":
        scaling["target"] = 1.5
    built_hpa, built_scaled = hpa(scaling), scaled_object(scaling)
    assert built_hpa is not None and built_scaled is not None
    kubernetes_validate.validate(built_hpa, "1.31", strict=True)
    for manifest in (built_hpa, built_scaled):
        adopted = copy.deepcopy(manifest)
        kopf.adopt(adopted, owner=owner(scaling), nested=())
        assert adopted == manifest


def test_the_gauges_are_the_servers() -> None:
    """The names the autoscalers read are the ones the server registers (one definition, both sides)."""
    from prometheus_client import generate_latest

    metrics = pytest.importorskip("sdxl_workloads.server.metrics")
    exported = generate_latest(metrics.ServerMetrics().registry).decode()
    assert f"\n{QUEUE_DEPTH} " in exported and f"\n{IN_FLIGHT} " in exported
