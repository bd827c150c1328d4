"""Keeping a deployment's adapters ConfigMap in step with its set of fine-tunes.

Creates the ConfigMap, or brings this deployment's own one up to date when the set changed (another
object of that name is a NameConflict, left alone). What the ConfigMap holds, and why its content
stays out of the pod template: :mod:`sdxl_operator.manifests.adapters_configmap`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import kopf

from sdxl_operator.handlers.configmap_sync import ensure_configmap
from sdxl_operator.handlers.kube_api import KubeApi
from sdxl_operator.manifests.adapters_configmap import build_adapters_configmap
from sdxl_operator.spec.adapter_set import AdapterSet


async def ensure_adapters_configmap(api: KubeApi, owner: Mapping[str, Any], adapter_set: AdapterSet,
                                    logger: kopf.Logger) -> None:
    """Create the adapters ConfigMap, or patch this deployment's own one when the set changed."""
    await ensure_configmap(api, owner, build_adapters_configmap(owner, adapter_set), logger,
                           why_updated=f"{len(adapter_set.served)} adapter(s)")
