"""The NetworkPolicy ``<dep>`` of an SDXLDeployment's server pods (Helm ``networkPolicy.enabled``).

A Service is reachable from every pod of the cluster; a tenant's model (and its GPU or Inferentia
time) should not be. The policy selects the server pods and admits, on the server port only, pods
of the same namespace and the sources the administrator lists (``SDXL_NETWORK_POLICY_SOURCES``, Helm
``networkPolicy.extraSources``: an ingress controller's namespace, the monitoring namespace that
scrapes ``/metrics``, a load balancer's CIDR). The kubelet's probes are not pod traffic and are not
affected. It takes effect only where the cluster's network plugin enforces NetworkPolicies. Named
like the Deployment. Pure.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

from sdxl_operator.core.labels import SERVER, deployment_labels
from sdxl_operator.core.naming import deployment_name
from sdxl_operator.manifests.inference_deployment import PORT
from sdxl_operator.manifests.ownership import child_metadata


def build_network_policy(owner: Mapping[str, Any], sources: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The NetworkPolicy manifest for the SDXLDeployment ``owner``. Pure."""
    name = owner["metadata"]["name"]
    labels = deployment_labels(name, SERVER)
    # An empty podSelector without a namespaceSelector means "every pod of this namespace".
    peers: list[dict[str, Any]] = [{"podSelector": {}}, *(copy.deepcopy(dict(source)) for source in sources)]
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": child_metadata(owner, deployment_name(name), labels),
        "spec": {
            "podSelector": {"matchLabels": dict(labels)},
            "policyTypes": ["Ingress"],
            "ingress": [{"from": peers, "ports": [{"protocol": "TCP", "port": PORT}]}],
        },
    }
