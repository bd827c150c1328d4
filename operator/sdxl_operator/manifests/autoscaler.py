"""The HorizontalPodAutoscaler (autoscaling/v2) of an SDXLDeployment with ``spec.autoscaling``.

It scales the inference Deployment on average CPU use (percent of the pods' CPU request) between
``minReplicas`` and ``maxReplicas``; the Deployment then carries no ``replicas`` of its own. Named like
the Deployment. Without ``spec.autoscaling`` there is none (the controller deletes a leftover one).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sdxl_operator.core.labels import SERVER, deployment_labels
from sdxl_operator.core.naming import deployment_name
from sdxl_operator.manifests.ownership import child_metadata


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
            "metrics": [{
                "type": "Resource",
                "resource": {"name": "cpu", "target": {
                    "type": "Utilization", "averageUtilization": int(scaling["targetCPUUtilizationPercentage"])}},
            }],
        },
    }
