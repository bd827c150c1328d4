"""Keeping a deployment's server spec ConfigMap in step with its spec.

Creates the ConfigMap, or brings this deployment's own one up to date when the spec changed (another
object of that name is a NameConflict, left alone). Running pods read it once, at start; the pod
template's spec hash (:mod:`sdxl_operator.manifests.server_spec`) is what rolls them onto a new one.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import kopf

from sdxl_operator.handlers.configmap_sync import ensure_configmap
from sdxl_operator.handlers.kube_api import KubeApi
from sdxl_operator.manifests.server_spec import build_server_spec_configmap


async def ensure_server_spec_configmap(api: KubeApi, owner: Mapping[str, Any], served: Mapping[str, Any],
                                       logger: kopf.Logger) -> None:
    """Create the server spec ConfigMap, or patch this deployment's own one when the spec changed."""
    await ensure_configmap(api, owner, build_server_spec_configmap(owner, served), logger,
                           why_updated="the server spec changed")
