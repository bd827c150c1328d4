"""The pod every workload runs in (training Job, compile Job, inference Deployment), in one place.

All three share: the secure defaults of ``pod_security``, the writable scratch folders, ``/dev/shm``,
the ``pvc://`` claims their URIs name, the environment that tells the workload where its result and
claims go, the termination message path, the workload service account, and node placement. The
builders add what is theirs (resources, probes, ports, the API key volume).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sdxl_contract.workload_protocol import PVC_ROOT, PVC_ROOT_ENV, TERMINATION_LOG_ENV, TERMINATION_LOG_PATH
from sdxl_operator.core.settings import OperatorSettings
from sdxl_operator.manifests import pod_security, volumes


def workload_container(
    *, name: str, image: str, command: list[str], args: list[str], resources: Mapping[str, Any],
    mounts: Sequence[Mapping[str, Any]], settings: OperatorSettings, hf_token: bool,
) -> dict[str, Any]:
    """A workload container; ``hf_token`` adds ``HF_TOKEN`` for pods that may download from the hub."""
    return {
        "name": name,
        "image": image,
        "imagePullPolicy": settings.image_pull_policy,
        "command": command,
        "args": args,
        "env": [
            # The kubelet reads the result from the termination message path; the workload finds it here.
            {"name": TERMINATION_LOG_ENV, "value": TERMINATION_LOG_PATH},
            {"name": PVC_ROOT_ENV, "value": PVC_ROOT},
            {"name": "PYTHONUNBUFFERED", "value": "1"},
            *pod_security.scratch_env(),
            *(volumes.hf_token_env(settings.hf_token_secret) if hf_token else []),
        ],
        "resources": dict(resources),
        "volumeMounts": [dict(mount) for mount in mounts],
        "securityContext": pod_security.container_security_context(),
        "terminationMessagePath": TERMINATION_LOG_PATH,
        # A crash that wrote no result still tells the operator why: the log's tail.
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }


def workload_volumes(
    spec_configmap: str | None, pvc_volumes: Sequence[dict[str, Any]], pvc_mounts: Sequence[dict[str, Any]],
    *, tmp_size_limit: str | None = None,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(volumes, mounts): the spec ConfigMap (when given), ``/dev/shm``, the scratch folders, the claims."""
    spec_volumes = [volumes.spec_volume(spec_configmap)] if spec_configmap else []
    spec_mounts = [volumes.spec_mount()] if spec_configmap else []
    return (
        [*spec_volumes, volumes.shm_volume(), *pod_security.scratch_volumes(tmp_size_limit), *pvc_volumes],
        [*spec_mounts, volumes.shm_mount(), *pod_security.scratch_mounts(), *pvc_mounts],
    )


def workload_pod_spec(
    container: dict[str, Any], pod_volumes: list[dict[str, Any]], settings: OperatorSettings, *,
    run_once: bool, node_selector: Mapping[str, str], tolerations: list[dict[str, Any]],
) -> dict[str, Any]:
    """The pod spec around ``container``; ``run_once`` for Jobs (restartPolicy Never)."""
    pod_spec: dict[str, Any] = {
        **({"restartPolicy": "Never"} if run_once else {}),
        **pod_security.secure_pod_fields(),
        "containers": [container],
        "volumes": pod_volumes,
    }
    if settings.workload_service_account:
        pod_spec["serviceAccountName"] = settings.workload_service_account
    if node_selector:
        pod_spec["nodeSelector"] = dict(node_selector)
    if tolerations:
        pod_spec["tolerations"] = tolerations
    return pod_spec
