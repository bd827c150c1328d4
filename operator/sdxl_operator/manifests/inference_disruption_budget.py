"""The PodDisruptionBudget ``<dep>`` of an SDXLDeployment's server pods, while it serves with several.

Node drains and Karpenter's consolidation evict pods through the eviction API, which honours this
budget: at most one server pod of the deployment is evicted at a time while the others keep serving
(a replacement pod takes minutes to load the model). ``unhealthyPodEvictionPolicy: AlwaysAllow`` lets
a pod that is not ready (still loading, or broken) go at any time, so the budget never blocks a drain
for a pod that serves nothing. With one replica (and no autoscaling above one) there is no budget:
it could only block the drain of that pod's node, so the operator deletes its own when the replicas
drop to one. Named like the Deployment. Pure.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sdxl_operator.core.labels import SERVER, deployment_labels
from sdxl_operator.core.naming import deployment_name
from sdxl_operator.manifests.ownership import child_metadata


def wants_disruption_budget(resolved: Mapping[str, Any]) -> bool:
    """Whether the resolved spec serves with more than one pod (fixed replicas, or autoscaling's maximum)."""
    autoscaling: Mapping[str, Any] | None = resolved.get("autoscaling")
    if autoscaling:
        return int(autoscaling.get("maxReplicas", 1)) > 1
    return int(resolved.get("replicas", 1)) > 1


def build_disruption_budget(owner: Mapping[str, Any]) -> dict[str, Any]:
    """The PodDisruptionBudget manifest for the SDXLDeployment ``owner``. Pure."""
    name = owner["metadata"]["name"]
    labels = deployment_labels(name, SERVER)
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": child_metadata(owner, deployment_name(name), labels),
        "spec": {
            "maxUnavailable": 1,
            "selector": {"matchLabels": dict(labels)},
            "unhealthyPodEvictionPolicy": "AlwaysAllow",
        },
    }
