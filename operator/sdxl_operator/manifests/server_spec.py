"""The spec the server pods read: the ``<dep>-server-spec`` ConfigMap, mounted at ``/etc/sdxl/spec.json``.

``sdxl-workload serve --spec`` takes from it what to serve and how (accelerator, LoRA scale, batching,
queue, timeout, auth, the adapters' limits). Two kinds of field stay apart:

* **Not in the ConfigMap**: the scale (``replicas``, ``autoscaling``). The server does not read it, and
  a change of it must neither touch the pods' spec nor roll them.
* **In the ConfigMap, not in the pods' hash**: a set's members (``fineTunes``, ``fineTuneSelector``).
  The server reads the adapters file for them (:mod:`adapters_configmap`); they are in the spec only
  because a spec names what it serves. A fine-tune joining a set never rolls the pods.

Every other field is in :func:`server_spec_hash`, which the pod template carries: a change that matters
to the server rolls the pods onto the new spec. Pure.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from sdxl_operator.core.labels import SERVER, deployment_labels
from sdxl_operator.core.naming import server_configmap_name
from sdxl_operator.manifests.spec_configmap import spec_configmap
from sdxl_operator.spec.adapter_set import SET_FIELDS

SCALE_FIELDS = ("replicas", "autoscaling")
SPEC_HASH = "sdxl.io/spec-hash"


def server_spec(resolved: Mapping[str, Any], spec: Mapping[str, Any]) -> dict[str, Any]:
    """The resolved spec as the server reads it: without the scale, with a set's members from ``spec``
    (the user's spec; the resolved spec of a set leaves them out)."""
    served = {key: value for key, value in resolved.items() if key not in SCALE_FIELDS}
    served.update({key: spec[key] for key in SET_FIELDS if spec.get(key) is not None})
    return served


def server_spec_hash(resolved: Mapping[str, Any]) -> str:
    """A short digest of what the server reads from the spec, a set's members and the scale left out."""
    read = {key: value for key, value in resolved.items() if key not in (*SCALE_FIELDS, *SET_FIELDS)}
    return hashlib.sha256(json.dumps(read, sort_keys=True).encode("utf-8")).hexdigest()[:16]


def build_server_spec_configmap(owner: Mapping[str, Any], served: Mapping[str, Any]) -> dict[str, Any]:
    """The ``<dep>-server-spec`` ConfigMap holding ``served`` (see :func:`server_spec`). Pure."""
    name = owner["metadata"]["name"]
    return spec_configmap(owner, server_configmap_name(name), deployment_labels(name, SERVER), served)
