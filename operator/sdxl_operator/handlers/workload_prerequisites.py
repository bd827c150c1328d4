"""What must exist in a namespace before a workload pod can start there: its ServiceAccount and claims.

* **The workload ServiceAccount** (``SDXL_WORKLOAD_SERVICE_ACCOUNT``, set by the chart). A cluster-wide
  install cannot know every namespace in advance, so the operator creates the account in the namespace
  of the resource it reconciles when it is missing, with the annotations the chart was given (an IRSA
  ``eks.amazonaws.com/role-arn``, say) and, over them, that namespace's own
  (``SDXL_WORKLOAD_SERVICE_ACCOUNT_NAMESPACE_ANNOTATIONS``: one cloud identity per tenant), labelled as the operator's and mounting no API token. An account
  of that name that already exists is *used as it is* and never modified: that is how an administrator
  gives a namespace its own identity (its own role ARN, or an EKS Pod Identity association made for
  that account). It has no owner reference: it serves every resource of the namespace and outlives
  them. With ``SDXL_CREATE_WORKLOAD_SERVICE_ACCOUNT=false`` the operator creates none; a missing one
  then shows as ``PodCreationFailed`` with the Job controller's own message.
* **Every PersistentVolumeClaim the pod mounts** (the ``pvc://`` artifact store, and claims a spec
  names). A missing claim would leave the pod Pending with a scheduler message; it is reported at once
  as ``StorageNotFound``, naming the claim and what to do, and nothing is created until it exists.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from sdxl_contract.failure_reasons import FailureReason
from sdxl_operator.core.labels import MANAGED_BY, MANAGED_BY_KEY
from sdxl_operator.core.settings import OperatorSettings
from sdxl_operator.handlers.kube_api import KubeApi

COMPONENT_KEY = "app.kubernetes.io/component"
WORKLOAD_COMPONENT = "workload"


class StorageNotFound(Exception):
    """A claim the workload pod mounts does not exist in its namespace."""

    reason = FailureReason.STORAGE_NOT_FOUND

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def build_workload_service_account(namespace: str, settings: OperatorSettings) -> dict[str, Any] | None:
    """The workload ServiceAccount the operator creates in ``namespace``, or None when it creates none. Pure."""
    if not settings.workload_service_account or not settings.create_workload_service_account:
        return None
    metadata: dict[str, Any] = {
        "name": settings.workload_service_account,
        "namespace": namespace,
        "labels": {MANAGED_BY_KEY: MANAGED_BY, COMPONENT_KEY: WORKLOAD_COMPONENT},
    }
    # A namespace's own annotations (its own IAM role, say) win over the cluster-wide ones key by key.
    annotations = {**settings.workload_service_account_annotations,
                   **settings.workload_service_account_namespace_annotations.get(namespace, {})}
    if annotations:
        metadata["annotations"] = annotations
    # The pods never call the Kubernetes API: no token (workload_pod sets the same on the pods).
    return {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": metadata, "automountServiceAccountToken": False}


def claims_of(pod_spec: Mapping[str, Any]) -> list[str]:
    """The PersistentVolumeClaims a pod spec mounts, in order, without repeats."""
    claims: list[str] = []
    for volume in pod_spec.get("volumes") or []:
        claim = (volume.get("persistentVolumeClaim") or {}).get("claimName")
        if isinstance(claim, str) and claim not in claims:
            claims.append(claim)
    return claims


def missing_claim_message(namespace: str, claim: str, settings: OperatorSettings) -> str:
    store = f" (the operator's artifact store {settings.artifact_store})" \
        if settings.artifact_store.startswith(f"pvc://{claim}/") or settings.artifact_store == f"pvc://{claim}" else ""
    return (f"PersistentVolumeClaim {namespace}/{claim}{store} does not exist, so the workload pod could not start. "
            f"Create it in namespace {namespace} (ReadWriteMany when several pods share it), or use an s3:// "
            "location; the operator goes on once it exists")


async def ensure_workload_prerequisites(
    api: KubeApi, namespace: str, pod_specs: Iterable[Mapping[str, Any]], settings: OperatorSettings,
) -> bool:
    """Check the claims, then create the workload ServiceAccount when missing; True if it was created.

    Raises StorageNotFound, or KubeApiError (temporary).
    """
    for pod_spec in pod_specs:
        for claim in claims_of(pod_spec):
            if await api.read("PersistentVolumeClaim", namespace, claim) is None:
                raise StorageNotFound(missing_claim_message(namespace, claim, settings))
    account = build_workload_service_account(namespace, settings)
    if account is None or await api.read("ServiceAccount", namespace, account["metadata"]["name"]) is not None:
        return False
    # 409 (created meanwhile, by an administrator or another handler) is as good: use that one.
    return await api.create(account)
