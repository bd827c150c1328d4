"""Volumes and mounts shared by workload pods.

* ``pvc://claim/path`` URIs in a spec are mounted at ``<PVC_ROOT>/<claim>``, where the workloads map
  the URI to (``sdxl_contract.workload_protocol``); claims used only for inputs are mounted read-only.
* ``/dev/shm`` is a memory-backed emptyDir: PyTorch data loaders share tensors through it and the
  container runtime's default 64 MiB is far too small.
* The resolved spec comes from a ConfigMap at ``SPEC_PATH`` (``/etc/sdxl/spec.json``).
* A Hugging Face token, when the operator is configured with a Secret, comes from its ``token`` key.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from sdxl_contract.uris import pvc_claim
from sdxl_contract.workload_protocol import PVC_ROOT, SPEC_DIR, SPEC_FILE
from sdxl_operator.core.naming import child_name

SPEC_VOLUME = "spec"
SHM_VOLUME = "dshm"
HF_TOKEN_KEY = "token"


def pvc_volumes(inputs: Iterable[object], outputs: Iterable[object]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(volumes, mounts) for every claim named by the input and output URIs, sorted by claim."""
    read_only: dict[str, bool] = {}
    for uri in inputs:
        claim = pvc_claim(uri)
        if claim is not None:
            read_only.setdefault(claim, True)
    for uri in outputs:
        claim = pvc_claim(uri)
        if claim is not None:
            read_only[claim] = False
    volumes: list[dict[str, Any]] = []
    mounts: list[dict[str, Any]] = []
    for claim in sorted(read_only):
        name = child_name(f"pvc-{claim}")
        volume_source: dict[str, Any] = {"claimName": claim}
        if read_only[claim]:
            volume_source["readOnly"] = True
        volumes.append({"name": name, "persistentVolumeClaim": volume_source})
        mount: dict[str, Any] = {"name": name, "mountPath": f"{PVC_ROOT}/{claim}"}
        if read_only[claim]:
            mount["readOnly"] = True
        mounts.append(mount)
    return volumes, mounts


def shm_volume() -> dict[str, Any]:
    """A memory-backed emptyDir for ``/dev/shm``."""
    return {"name": SHM_VOLUME, "emptyDir": {"medium": "Memory"}}


def shm_mount() -> dict[str, Any]:
    return {"name": SHM_VOLUME, "mountPath": "/dev/shm"}


def spec_data(resolved_spec: Mapping[str, Any]) -> dict[str, str]:
    """A spec ConfigMap's ``data``: canonical JSON (sorted keys), so one spec always gives the same bytes."""
    return {SPEC_FILE: json.dumps(resolved_spec, indent=2, sort_keys=True) + "\n"}


def spec_volume(configmap_name: str) -> dict[str, Any]:
    """The resolved-spec ConfigMap as a volume holding ``spec.json``."""
    return {
        "name": SPEC_VOLUME,
        "configMap": {"name": configmap_name, "items": [{"key": SPEC_FILE, "path": SPEC_FILE}]},
    }


def spec_mount() -> dict[str, Any]:
    return {"name": SPEC_VOLUME, "mountPath": SPEC_DIR, "readOnly": True}


def hf_token_env(secret_name: str | None) -> list[dict[str, Any]]:
    """``HF_TOKEN`` from the Secret's ``token`` key, or nothing when no Secret is configured.

    ``optional`` so a missing Secret does not block pods that need no token (public models, the
    embedded ones); a gated model then fails with the hub's own "access denied" message.
    """
    if not secret_name:
        return []
    return [{
        "name": "HF_TOKEN",
        "valueFrom": {"secretKeyRef": {"name": secret_name, "key": HF_TOKEN_KEY, "optional": True}},
    }]
