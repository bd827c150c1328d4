"""Keeping one of a resource's ConfigMaps in step with what its builder says it should hold.

Creates the ConfigMap, or patches this resource's own one when its data differs; another object of
that name is a NameConflict, left alone (:func:`child_ownership.require_controlled`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import kopf

from sdxl_operator.handlers.child_creation import create_child
from sdxl_operator.handlers.child_ownership import require_controlled
from sdxl_operator.handlers.kube_api import KubeApi


async def ensure_configmap(api: KubeApi, owner: Mapping[str, Any], desired: Mapping[str, Any],
                           logger: kopf.Logger, *, why_updated: str) -> None:
    """Create `desired`, or patch the owner's own ConfigMap of that name when its data differs."""
    meta = desired["metadata"]
    existing = await api.read("ConfigMap", meta["namespace"], meta["name"])
    if existing is None:
        existing = await create_child(api, desired, owner, logger)
        if existing is None:
            return
    require_controlled(existing, owner, "ConfigMap")
    if existing.get("data") != desired["data"]:
        await api.patch("ConfigMap", meta["namespace"], meta["name"], {"data": desired["data"]})
        logger.info(f"updated ConfigMap {meta['name']}: {why_updated}")
