"""The HorizontalPodAutoscaler (autoscaling/v2) of an SDXLDeployment with ``spec.autoscaling``.

It scales the inference Deployment between ``minReplicas`` and ``maxReplicas`` on ``metric``: the pods'
average CPU use (percent of their request), or one of the server's own gauges averaged over the pods
(queue depth or requests in flight, see :mod:`sdxl_contract.server_metrics`) as a ``Pods`` metric. A
``Pods`` metric reaches the HPA through the custom metrics API, i.e. a Prometheus adapter serving the
gauge (the README's "Autoscaling" section has its rule); without one the HPA reports the metric as
unavailable and keeps the current number of pods. The Deployment carries no ``replicas`` of its own.
Named like the Deployment. Without ``spec.autoscaling`` there is none (the controller deletes a
leftover one), and with KEDA the operator builds a ScaledObject (:mod:`scaled_object`) instead.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sdxl_contract.server_metrics import AUTOSCALING_GAUGES
from sdxl_operator.core.labels import SERVER, deployment_labels
from sdxl_operator.core.naming import deployment_name
from sdxl_operator.manifests.ownership import child_metadata

CPU = "cpu"


def target_millis(scaling: Mapping[str, Any]) -> int:
    """``spec.autoscaling.target`` in thousandths, the finest step the CRD promises (at least 1)."""
    return max(1, round(float(scaling["target"]) * 1000))


def _average_value(millis: int) -> str:
    """A Kubernetes quantity: whole numbers plain ("2"), the rest in milli-units ("500m")."""
    return str(millis // 1000) if millis % 1000 == 0 else f"{millis}m"


def _metric(scaling: Mapping[str, Any]) -> dict[str, Any]:
    metric = str(scaling.get("metric") or CPU)
    if metric == CPU:
        return {"type": "Resource", "resource": {"name": "cpu", "target": {
            "type": "Utilization", "averageUtilization": int(scaling["targetCPUUtilizationPercentage"])}}}
    return {"type": "Pods", "pods": {
        "metric": {"name": AUTOSCALING_GAUGES[metric]},
        "target": {"type": "AverageValue", "averageValue": _average_value(target_millis(scaling))},
    }}


def build_autoscaler(owner: Mapping[str, Any], resolved_spec: Mapping[str, Any]) -> dict[str, Any] | None:
    """The HPA manifest, or None when the spec asks for a fixed number of replicas. Pure."""
    scaling = resolved_spec.get("autoscaling")
    if not scaling:
        return None
    name = owner["metadata"]["name"]
    target = deployment_name(name)
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": child_metadata(owner, target, deployment_labels(name, SERVER)),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": target},
            "minReplicas": int(scaling["minReplicas"]),
            "maxReplicas": int(scaling["maxReplicas"]),
            "metrics": [_metric(scaling)],
        },
    }
