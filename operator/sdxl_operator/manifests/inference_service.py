"""The Service ``<dep>`` in front of the inference pods: port 8080, named ``http``, ClusterIP.

The in-cluster URL is ``http://<service>.<namespace>.svc:8080`` (``status.url``). Keep it internal
unless ``spec.auth`` is set; exposing it is left to the cluster's own Ingress/Gateway.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sdxl_operator.core.labels import SERVER, deployment_labels
from sdxl_operator.core.naming import deployment_name
from sdxl_operator.manifests.inference_deployment import PORT, PORT_NAME
from sdxl_operator.manifests.ownership import child_metadata


def service_url(deployment: str, namespace: str) -> str:
    """``http://<service>.<namespace>.svc:8080``."""
    return f"http://{deployment_name(deployment)}.{namespace}.svc:{PORT}"


def build_inference_service(owner: Mapping[str, Any]) -> dict[str, Any]:
    """The Service manifest for the SDXLDeployment ``owner``. Pure."""
    name = owner["metadata"]["name"]
    labels = deployment_labels(name, SERVER)
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": child_metadata(owner, deployment_name(name), labels),
        "spec": {
            "type": "ClusterIP",
            "selector": dict(labels),
            "ports": [{"name": PORT_NAME, "port": PORT, "targetPort": PORT_NAME, "protocol": "TCP"}],
        },
    }
