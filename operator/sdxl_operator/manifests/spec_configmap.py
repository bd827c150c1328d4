"""The ``<ft>-spec`` ConfigMap carrying the resolved spec as ``spec.json``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sdxl_operator.core.labels import finetune_labels
from sdxl_operator.core.naming import finetune_configmap_name
from sdxl_operator.manifests.ownership import child_metadata
from sdxl_operator.manifests.volumes import spec_data


def build_spec_configmap(owner: Mapping[str, Any], resolved_spec: Mapping[str, Any]) -> dict[str, Any]:
    """The ConfigMap manifest for the SDXLFineTune ``owner``. Pure."""
    name = owner["metadata"]["name"]
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": child_metadata(owner, finetune_configmap_name(name), finetune_labels(name)),
        "data": spec_data(resolved_spec),
    }
