"""The pod every workload runs in (training Job, compile Job, inference Deployment), in one place.

All three share: the secure defaults of ``pod_security``, the writable scratch folders, ``/dev/shm``,
the ``pvc://`` claims their URIs name, the environment that tells the workload where its result and
claims go, the termination message path, the workload service account, the registry credentials,
node placement, and the spec's ``scheduling`` (affinity, priority class, topology spread, the pods' own
labels and annotations, which never replace the operator's). The builders add what is theirs
(resources, probes, ports, the API key volume).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

from sdxl_contract.workload_protocol import PVC_ROOT, PVC_ROOT_ENV, TERMINATION_LOG_ENV, TERMINATION_LOG_PATH
from sdxl_operator.core.settings import OperatorSettings
from sdxl_operator.manifests import pod_security, volumes

# Karpenter never disrupts (consolidation, drift, expiry) a node while a pod with this annotation runs:
# a 40-minute compile or an hours-long training run would otherwise start over on another node.
# https://karpenter.sh/docs/concepts/disruption/#pod-level-controls
DO_NOT_DISRUPT = "karpenter.sh/do-not-disrupt"


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
    scheduling: Mapping[str, Any] | None = None, labels: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The pod spec around ``container``; ``run_once`` for Jobs (restartPolicy Never).

    ``scheduling`` is the spec's (camelCase, schema-valid and within the administrator's limits):
    its affinity, priority class and topology spread constraints go into the pod spec as they are,
    a constraint without a labelSelector counting the pods with the operator's ``labels``.
    """
    pod_spec: dict[str, Any] = {
        **({"restartPolicy": "Never"} if run_once else {}),
        **pod_security.secure_pod_fields(),
        "containers": [container],
        "volumes": pod_volumes,
    }
    if settings.workload_service_account:
        pod_spec["serviceAccountName"] = settings.workload_service_account
    if settings.workload_image_pull_secrets:
        pod_spec["imagePullSecrets"] = [{"name": secret} for secret in settings.workload_image_pull_secrets]
    if node_selector:
        pod_spec["nodeSelector"] = dict(node_selector)
    if tolerations:
        pod_spec["tolerations"] = tolerations
    scheduling = scheduling or {}
    if scheduling.get("affinity"):
        pod_spec["affinity"] = copy.deepcopy(dict(scheduling["affinity"]))
    if scheduling.get("priorityClassName"):
        pod_spec["priorityClassName"] = str(scheduling["priorityClassName"])
    spread = [copy.deepcopy(dict(constraint)) for constraint in scheduling.get("topologySpreadConstraints") or []]
    for constraint in spread:
        constraint.setdefault("labelSelector", {"matchLabels": dict(labels or {})})
    if spread:
        pod_spec["topologySpreadConstraints"] = spread
    return pod_spec


def pod_template_metadata(
    labels: Mapping[str, str], annotations: Mapping[str, str], scheduling: Mapping[str, Any] | None, *,
    do_not_disrupt: bool,
) -> dict[str, Any]:
    """``metadata`` of a pod template: the spec's podLabels and podAnnotations under the operator's own.

    The operator's labels and annotations win (the admin policy refuses a spec that names them, so
    this only guards). ``do_not_disrupt``: Jobs whose work would be lost get ``karpenter.sh/do-not-disrupt``
    unless the spec's podAnnotations set it themselves (``"false"`` lets Karpenter move them).
    """
    scheduling = scheduling or {}
    pod_annotations = {
        **({DO_NOT_DISRUPT: "true"} if do_not_disrupt else {}),
        **(scheduling.get("podAnnotations") or {}),
        **annotations,
    }
    metadata: dict[str, Any] = {"labels": {**(scheduling.get("podLabels") or {}), **labels}}
    if pod_annotations:
        metadata["annotations"] = pod_annotations
    return metadata
