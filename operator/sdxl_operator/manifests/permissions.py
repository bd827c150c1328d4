"""THE declaration of every Kubernetes API permission the operator uses.

The Helm chart renders its ClusterRole/Role from this list (a test compares them), so a handler that
starts using a new API must add it here first. Two parts:

* ``FRAMEWORK`` — what Kopf itself needs: discovering CRDs (``settings.scanning``), observing
  namespaces when started with namespace globs, posting Events (Kopf posts core ``v1`` Events), and
  the peering objects (``kopf.dev``) unless the operator runs ``--standalone``: the cluster-wide
  ClusterKopfPeering when it serves every namespace, a KopfPeering in each namespace otherwise.
  Source: Kopf's docs "Deployment" RBAC example and ``kopf/_cogs/structs/references.py``.
* ``APPLICATION`` — what our handlers do: watch and patch our custom resources and their status,
  create and read the children, list pods and read their logs for progress.

Verbs are the least the code uses. The operator deletes four kinds of children itself, each only when
the SDXLDeployment is its controller owner (:mod:`child_ownership`): the HorizontalPodAutoscaler or
KEDA ScaledObject once ``spec.autoscaling`` is removed or the operator switched to the other kind,
the inference NetworkPolicy once network policies are turned off, and the PodDisruptionBudget once
one server pod is left. The ScaledObject rule is granted
with KEDA off too: switching KEDA off must remove the ScaledObjects the operator made, and on a
cluster without KEDA's CRD the rule grants nothing. Every other child goes with its custom resource
through ownerReferences and the garbage collector (finished Jobs also expire through
``ttlSecondsAfterFinished``). Nothing updates with PUT.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any

from sdxl_operator.core.custom_resources import DEPLOYMENTS, FINETUNES, GROUP


@dataclasses.dataclass(frozen=True)
class Permission:
    """One RBAC rule: API group, resources and verbs, with where and why it is needed."""

    group: str  # "" is the core API group
    resources: tuple[str, ...]
    verbs: tuple[str, ...]
    purpose: str
    cluster_scoped: bool = False  # True: cluster-scoped resources, always in a ClusterRole
    # Needed only when not running --standalone; then the cluster-scoped peering rule only cluster-wide
    # and the namespaced one only when serving a list of namespaces.
    only_with_peering: bool = False

    def as_rule(self) -> dict[str, Any]:
        """The rule as it appears in a Role/ClusterRole."""
        return {"apiGroups": [self.group], "resources": list(self.resources), "verbs": list(self.verbs)}


FRAMEWORK: tuple[Permission, ...] = (
    Permission(
        "apiextensions.k8s.io", ("customresourcedefinitions",), ("get", "list", "watch"),
        "Kopf discovers the served custom resources", cluster_scoped=True,
    ),
    Permission(
        "", ("namespaces",), ("get", "list", "watch"),
        "Kopf observes namespaces when started with namespace patterns", cluster_scoped=True,
    ),
    Permission("", ("events",), ("create",), "Kopf and the handlers post Events on the custom resources"),
    Permission(
        "kopf.dev", ("clusterkopfpeerings",), ("get", "list", "watch", "patch"),
        "Kopf peering between operator replicas (cluster-wide)", cluster_scoped=True, only_with_peering=True,
    ),
    Permission(
        "kopf.dev", ("kopfpeerings",), ("get", "list", "watch", "patch"),
        "Kopf peering between operator replicas (per namespace)", only_with_peering=True,
    ),
)

APPLICATION: tuple[Permission, ...] = (
    Permission(
        GROUP, (FINETUNES, DEPLOYMENTS), ("get", "list", "watch", "patch"),
        "watch the custom resources; Kopf patches its annotations and finalizer",
    ),
    Permission(
        GROUP, (f"{FINETUNES}/status", f"{DEPLOYMENTS}/status"), ("get", "patch"),
        "write status through the status subresource",
    ),
    Permission(
        "", ("configmaps",), ("get", "list", "watch", "create", "patch"),
        "the resolved-spec ConfigMap of each workload; the adapters ConfigMap of a set of fine-tunes, patched as the set changes; watched (its own only, by label) to follow changes",
    ),
    Permission("batch", ("jobs",), ("get", "list", "watch", "create"),
               "training and compile Jobs; watched (its own only, by label) so status follows them"),
    Permission("", ("pods",), ("get", "list", "watch"),
               "read Job and server pods to explain Pending/failed states; watched (its own only, by label)"),
    Permission("", ("pods/log",), ("get",), "read the training progress lines from the pod log"),
    Permission("", ("events",), ("list",), "read a Job's FailedCreate Events: why it has no pod (quota, admission)"),
    Permission(
        "", ("serviceaccounts",), ("get", "create"),
        "create the workload ServiceAccount in a namespace that has none (never modified afterwards)",
    ),
    Permission("", ("persistentvolumeclaims",), ("get",), "check that the claims a workload pod mounts exist"),
    Permission("", ("services",), ("get", "list", "watch", "create", "patch"),
               "the inference Service of an SDXLDeployment; watched (its own only, by label) to follow changes"),
    Permission("apps", ("deployments",), ("get", "list", "watch", "create", "patch"),
               "the inference Deployment; watched (its own only, by label) so status follows its replicas"),
    Permission(
        "autoscaling", ("horizontalpodautoscalers",), ("get", "list", "watch", "create", "patch", "delete"),
        "optional autoscaling of the inference Deployment; watched (its own only, by label) to follow changes",
    ),
    Permission(
        "keda.sh", ("scaledobjects",), ("get", "create", "patch", "delete"),
        "the KEDA ScaledObject of an SDXLDeployment when the chart enables KEDA (deleted when switching back)",
    ),
    Permission(
        "networking.k8s.io", ("networkpolicies",), ("get", "list", "watch", "create", "patch", "delete"),
        "the NetworkPolicy of the inference pods (deleted when network policies are turned off); watched (its own only, by label)",
    ),
    Permission(
        "policy", ("poddisruptionbudgets",), ("get", "create", "patch", "delete"),
        "the PodDisruptionBudget of an SDXLDeployment serving with several pods (deleted when one is left)",
    ),
)


def all_permissions(*, peering: bool = False, clusterwide: bool = True) -> tuple[Permission, ...]:
    """Every permission; with ``peering`` (not standalone), the peering rule of the mode (``clusterwide``)."""
    return tuple(p for p in FRAMEWORK + APPLICATION
                 if not p.only_with_peering or (peering and p.cluster_scoped == clusterwide))


def rules(permissions: Iterable[Permission]) -> list[dict[str, Any]]:
    """RBAC ``rules`` for a Role/ClusterRole, in declaration order."""
    return [permission.as_rule() for permission in permissions]


def cluster_role_rules(*, clusterwide: bool, peering: bool = False) -> list[dict[str, Any]]:
    """Rules of the ClusterRole: everything when watching all namespaces, else only cluster-scoped ones."""
    chosen = [p for p in all_permissions(peering=peering, clusterwide=clusterwide) if clusterwide or p.cluster_scoped]
    return rules(chosen)


def namespace_role_rules(*, peering: bool = False) -> list[dict[str, Any]]:
    """Rules of the per-namespace Role when the operator watches a list of namespaces."""
    return rules(p for p in all_permissions(peering=peering, clusterwide=False) if not p.cluster_scoped)
