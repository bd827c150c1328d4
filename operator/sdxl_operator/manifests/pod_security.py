"""Secure pod defaults, in one place, for every pod the operator creates.

Workload pods run as a non-root user (uid/gid 1000, the images' ``sdxl`` user), with the runtime's
default seccomp profile, no privilege escalation, no Linux capabilities, a read-only root filesystem
and no Kubernetes API token (workloads know nothing of Kubernetes). The libraries still need to
write somewhere, so ``/tmp`` and a cache folder are writable emptyDirs, and the environment points
``HOME`` and the Hugging Face / torch caches there.
"""

from __future__ import annotations

from typing import Any

from sdxl_contract.workload_protocol import CACHE_DIR_ENV

RUN_AS_USER = 1000
RUN_AS_GROUP = 1000
FS_GROUP = 1000
TMP_DIR = "/tmp"
CACHE_DIR = "/var/cache/sdxl"
TMP_VOLUME = "tmp"
CACHE_VOLUME = "cache"


def pod_security_context() -> dict[str, Any]:
    """``spec.securityContext`` of a workload pod."""
    return {
        "runAsNonRoot": True,
        "runAsUser": RUN_AS_USER,
        "runAsGroup": RUN_AS_GROUP,
        "fsGroup": FS_GROUP,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def container_security_context() -> dict[str, Any]:
    """``securityContext`` of a workload container."""
    return {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
    }


def secure_pod_fields() -> dict[str, Any]:
    """Pod-spec fields to merge into every workload pod spec."""
    return {
        "automountServiceAccountToken": False,
        "securityContext": pod_security_context(),
    }


def scratch_volumes(tmp_size_limit: str | None = None) -> list[dict[str, Any]]:
    """Writable emptyDirs that stand in for the read-only root filesystem.

    ``tmp_size_limit`` caps ``/tmp`` for pods known to stage large files there: past it the kubelet
    evicts the pod instead of letting it fill the node's disk.
    """
    return [
        {"name": TMP_VOLUME, "emptyDir": {"sizeLimit": tmp_size_limit} if tmp_size_limit else {}},
        {"name": CACHE_VOLUME, "emptyDir": {}},
    ]


def scratch_mounts() -> list[dict[str, Any]]:
    """Mounts of :func:`scratch_volumes`."""
    return [
        {"name": TMP_VOLUME, "mountPath": TMP_DIR},
        {"name": CACHE_VOLUME, "mountPath": CACHE_DIR},
    ]


def scratch_env() -> list[dict[str, Any]]:
    """Environment that sends every library's writes into the writable folders."""
    return [
        {"name": "HOME", "value": TMP_DIR},
        {"name": "XDG_CACHE_HOME", "value": CACHE_DIR},
        {"name": "HF_HOME", "value": f"{CACHE_DIR}/huggingface"},
        {"name": "TORCH_HOME", "value": f"{CACHE_DIR}/torch"},
        {"name": CACHE_DIR_ENV, "value": CACHE_DIR},
    ]
