"""The ``<dep>-adapters`` ConfigMap: the adapters file the server pods of a set of fine-tunes read.

``adapters.json`` is ``{"adapters": {"<fine-tune name>": "<LoRA URI>"}}`` (the server's
``--adapters`` file). The pods mount the ConfigMap as a whole folder at ``/etc/sdxl/adapters/``, never
with ``subPath``: the kubelet updates a ConfigMap volume in place only without it, and the server
re-reads the file, so a fine-tune joins or leaves without a restart. For the same reason the file's
content is not in the pod template (nor its hash): changing it must not roll the pods.

:func:`build_adapters_configmap` is pure; :func:`ensure_adapters_configmap` creates it, or brings this
deployment's own one up to date (another object of that name is a NameConflict, left alone).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import kopf

from sdxl_operator.adapter_set import AdapterSet
from sdxl_operator.child_creation import create_child
from sdxl_operator.child_ownership import require_controlled
from sdxl_operator.kube_api import KubeApi
from sdxl_operator.labels import SERVER, deployment_labels
from sdxl_operator.naming import child_name
from sdxl_operator.ownership import child_metadata

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


async def ensure_adapters_configmap(api: KubeApi, owner: Mapping[str, Any], adapter_set: AdapterSet,
                                    logger: kopf.Logger) -> None:
    """Create the adapters ConfigMap, or patch this deployment's own one when the set changed."""
    desired = build_adapters_configmap(owner, adapter_set)
    meta = desired["metadata"]
    existing = await api.read("ConfigMap", meta["namespace"], meta["name"])
    if existing is None:
        existing = await create_child(api, desired, owner, logger)
        if existing is None:
            return
    require_controlled(existing, owner, "ConfigMap")
    if existing.get("data") != desired["data"]:
        await api.patch("ConfigMap", meta["namespace"], meta["name"], {"data": desired["data"]})
        logger.info(f"updated ConfigMap {meta['name']}: {len(adapter_set.served)} adapter(s)")
