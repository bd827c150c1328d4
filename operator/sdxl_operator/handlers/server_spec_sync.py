"""Keeping a deployment's server spec ConfigMap in step with its spec.

Creates the ConfigMap, or brings this deployment's own one up to date when the spec changed (another
object of that name is a NameConflict, left alone). Running pods read it once, at start; the pod
template's spec hash (:mod:`sdxl_operator.manifests.server_spec`) is what rolls them onto a new one.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import kopf

from sdxl_operator.handlers.child_creation import create_child
from sdxl_operator.handlers.child_ownership import require_controlled
from sdxl_operator.handlers.kube_api import KubeApi
from sdxl_operator.manifests.server_spec import build_server_spec_configmap


async def ensure_server_spec_configmap(api: KubeApi, owner: Mapping[str, Any], served: Mapping[str, Any],
                                       logger: kopf.Logger) -> None:
    """Create the server spec ConfigMap, or patch this deployment's own one when the spec changed."""
    desired = build_server_spec_configmap(owner, served)
    meta = desired["metadata"]
    existing = await api.read("ConfigMap", meta["namespace"], meta["name"])
    if existing is None:
        existing = await create_child(api, desired, owner, logger)
        if existing is None:
            return
    require_controlled(existing, owner, "ConfigMap")
    if existing.get("data") != desired["data"]:
        await api.patch("ConfigMap", meta["namespace"], meta["name"], {"data": desired["data"]})
        logger.info(f"updated ConfigMap {meta['name']}: the server spec changed")
