"""The ``<dep>-adapters`` ConfigMap: the adapters file the server pods of a set of fine-tunes read.

``adapters.json`` is ``{"adapters": {"<fine-tune name>": "<LoRA URI>"}}`` (the server's
``--adapters`` file). The pods mount the ConfigMap as a whole folder at ``/etc/sdxl/adapters/``, never
with ``subPath``: the kubelet updates a ConfigMap volume in place only without it, and the server
re-reads the file, so a fine-tune joins or leaves without a restart. For the same reason the file's
content is not in the pod template (nor its hash): changing it must not roll the pods.

Pure: :mod:`sdxl_operator.handlers.adapters_configmap_sync` creates it or brings it up to date.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from sdxl_operator.core.labels import SERVER, deployment_labels
from sdxl_operator.core.naming import child_name
from sdxl_operator.manifests.ownership import child_metadata
from sdxl_operator.spec.adapter_set import AdapterSet

ADAPTERS_DIR = "/etc/sdxl/adapters"
ADAPTERS_FILE = "adapters.json"
ADAPTERS_PATH = f"{ADAPTERS_DIR}/{ADAPTERS_FILE}"
ADAPTERS_VOLUME = "adapters"


def adapters_configmap_name(deployment: str) -> str:
    """``<dep>-adapters``."""
    return child_name(deployment, "adapters")


def adapters_data(adapter_set: AdapterSet) -> dict[str, str]:
    """The ConfigMap's ``data``: canonical JSON (sorted keys), so one set always gives the same bytes."""
    return {ADAPTERS_FILE: json.dumps({"adapters": adapter_set.adapters()}, indent=2, sort_keys=True) + "\n"}


def build_adapters_configmap(owner: Mapping[str, Any], adapter_set: AdapterSet) -> dict[str, Any]:
    """The adapters ConfigMap of the SDXLDeployment ``owner``. Pure."""
    name = owner["metadata"]["name"]
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": child_metadata(owner, adapters_configmap_name(name), deployment_labels(name, SERVER)),
        "data": adapters_data(adapter_set),
    }


def adapters_volume(deployment: str) -> dict[str, Any]:
    """The pod volume of the adapters ConfigMap (the whole map: no ``items``, no ``subPath``)."""
    return {"name": ADAPTERS_VOLUME, "configMap": {"name": adapters_configmap_name(deployment)}}


def adapters_mount() -> dict[str, Any]:
    return {"name": ADAPTERS_VOLUME, "mountPath": ADAPTERS_DIR, "readOnly": True}

