"""The KEDA ScaledObject (keda.sh/v1alpha1) of an SDXLDeployment with ``spec.autoscaling``, when the
operator runs with KEDA (the chart's ``keda.enabled``) instead of building a HorizontalPodAutoscaler.

Same range and metric as :mod:`autoscaler`: ``cpu`` becomes KEDA's cpu trigger; ``queueDepth`` and
``inFlight`` a Prometheus trigger whose query sums the server's gauge over this deployment's pods,
which KEDA divides by the number of pods (``metricType: AverageValue``) and compares with ``target``.
The query selects the series by the ``namespace`` and ``service`` labels that a Prometheus Operator
ServiceMonitor (the chart's ``serviceMonitor.enabled``) puts on what it scrapes from the inference
Service. KEDA makes and owns the HorizontalPodAutoscaler itself (``keda-hpa-<name>``).

``minReplicaCount`` is at least 1 (the CRD's bound): at zero pods nothing would hold the first request
while a pod starts, so it would fail, not wait. Named like the Deployment. Pure.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sdxl_contract.server_metrics import AUTOSCALING_GAUGES
from sdxl_operator.core.labels import SERVER, deployment_labels
from sdxl_operator.core.naming import deployment_name
from sdxl_operator.manifests.autoscaler import CPU, target_millis
from sdxl_operator.manifests.ownership import child_metadata

API_VERSION = "keda.sh/v1alpha1"
KIND = "ScaledObject"


def prometheus_query(gauge: str, namespace: str, service: str) -> str:
    """The PromQL sum of ``gauge`` over the pods behind ``service`` (names are DNS labels: no quoting needed)."""
    return f'sum({gauge}{{namespace="{namespace}",service="{service}"}})'


def _trigger(scaling: Mapping[str, Any], namespace: str, service: str, prometheus_address: str) -> dict[str, Any]:
    metric = str(scaling.get("metric") or CPU)
    if metric == CPU:
        return {"type": "cpu", "metricType": "Utilization",
                "metadata": {"value": str(int(scaling["targetCPUUtilizationPercentage"]))}}
    return {"type": "prometheus", "metricType": "AverageValue", "metadata": {
        "serverAddress": prometheus_address,
        "query": prometheus_query(AUTOSCALING_GAUGES[metric], namespace, service),
        # KEDA reads the threshold as a decimal number, not a Kubernetes quantity.
        "threshold": f"{target_millis(scaling) / 1000:g}",
    }}


def build_scaled_object(owner: Mapping[str, Any], resolved_spec: Mapping[str, Any], *,
                        prometheus_address: str) -> dict[str, Any] | None:
    """The ScaledObject manifest, or None when the spec asks for a fixed number of replicas. Pure."""
    scaling = resolved_spec.get("autoscaling")
    if not scaling:
        return None
    meta = owner["metadata"]
    target = deployment_name(meta["name"])
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": child_metadata(owner, target, deployment_labels(meta["name"], SERVER)),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": target},
            "minReplicaCount": int(scaling["minReplicas"]),
            "maxReplicaCount": int(scaling["maxReplicas"]),
            "triggers": [_trigger(scaling, meta["namespace"], target, prometheus_address)],
        },
    }
