"""A ConfigMap carrying a resolved spec as ``spec.json``, the workloads' ``--spec`` file.

The ``<ft>-spec`` ConfigMap of an SDXLFineTune's training Job is built here; the compile Job's and the
server pods' are the same object under their own names (:mod:`compile_job`, :mod:`server_spec`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sdxl_operator.core.labels import finetune_labels
from sdxl_operator.core.naming import finetune_configmap_name
from sdxl_operator.manifests.ownership import child_metadata
from sdxl_operator.manifests.volumes import spec_data


def spec_configmap(owner: Mapping[str, Any], name: str, labels: Mapping[str, str],
                   spec: Mapping[str, Any]) -> dict[str, Any]:
    """The ConfigMap ``name`` holding ``spec`` as ``spec.json``, owned by ``owner``. Pure."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": child_metadata(owner, name, dict(labels)),
        "data": spec_data(spec),
    }


def build_spec_configmap(owner: Mapping[str, Any], resolved_spec: Mapping[str, Any]) -> dict[str, Any]:
    """The ConfigMap manifest for the SDXLFineTune ``owner``. Pure."""
    name = owner["metadata"]["name"]
    return spec_configmap(owner, finetune_configmap_name(name), finetune_labels(name), resolved_spec)
