"""Which tolerations and node selectors a custom resource may ask for (the administrator's limits).

``spec.resources.tolerations`` and ``spec.resources.nodeSelector`` decide which nodes a pod may land
on; without limits any author of a custom resource could put work onto control-plane nodes or a
pool meant for someone else. The administrator lists the allowed keys as globs
(``SDXL_ALLOWED_TOLERATION_KEYS`` / ``SDXL_ALLOWED_NODE_SELECTOR_KEYS``, Helm values
``placement.allowedTolerationKeys`` / ``placement.allowedNodeSelectorKeys``); the defaults are the
keys of the pools the operator's own work uses. Always refused, whatever the lists say: the control
plane's ``node-role.kubernetes.io/*`` keys, and a toleration without a key (it tolerates every taint).
The operator's own node pools (Helm ``nodePools``) are the administrator's and are not checked.

``spec.scheduling`` is held to the same limits: node affinity keys are node selector keys; a priority
class must be one the administrator lists (``SDXL_ALLOWED_PRIORITY_CLASSES``, Helm
``placement.allowedPriorityClasses``; none by default: a class that preempts others' work is the
administrator's to hand out); pod labels and annotations may not name the operator's own keys (its
selectors and bookkeeping rely on them) nor those the Job and ReplicaSet controllers set. Pure.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from sdxl_operator.core.labels import INSTANCE_KEY, MANAGED_BY_KEY, NAME_KEY

ALWAYS_REFUSED = ("node-role.kubernetes.io/*",)
# Pod label keys the operator and Kubernetes' controllers set: the operator's selectors, Services and
# NetworkPolicies select on them, and the Job and ReplicaSet controllers own the rest.
RESERVED_POD_LABELS = (MANAGED_BY_KEY, NAME_KEY, INSTANCE_KEY, "sdxl.io/*", "batch.kubernetes.io/*",
                       "controller-uid", "job-name", "pod-template-hash")
# Pod annotation keys the operator writes (the compile key and artifact a pod serves).
RESERVED_POD_ANNOTATIONS = ("sdxl.io/*",)


def _allowed(key: str, patterns: Iterable[str]) -> bool:
    if any(fnmatch.fnmatchcase(key, pattern) for pattern in ALWAYS_REFUSED):
        return False
    return any(fnmatch.fnmatchcase(key, pattern) for pattern in patterns)


def _listed(patterns: tuple[str, ...]) -> str:
    return ", ".join(patterns) if patterns else "none"


def placement_errors(resources: object, *, toleration_keys: tuple[str, ...], node_selector_keys: tuple[str, ...],
                     path: str = "spec.resources") -> list[str]:
    """Problems of a (schema-valid) ``resources`` object against the allowed keys."""
    if not isinstance(resources, Mapping):
        return []
    errors: list[str] = []
    tolerations: list[Any] = resources.get("tolerations") or []
    for index, toleration in enumerate(tolerations):
        if not isinstance(toleration, Mapping):
            continue
        key = str(toleration.get("key") or "")
        where = f"{path}.tolerations[{index}]"
        if not key:
            errors.append(f"{where}: a toleration without a key tolerates every taint, the control plane's "
                          f"included; name the taint's key (allowed here: {_listed(toleration_keys)})")
        elif not _allowed(key, toleration_keys):
            errors.append(f"{where}: toleration key {key} is not allowed in this cluster (allowed: "
                          f"{_listed(toleration_keys)}); remove it, or ask the cluster administrator to add it "
                          "to the Helm value placement.allowedTolerationKeys")
    selector: Mapping[str, Any] = resources.get("nodeSelector") or {}
    for key in selector:
        if not _allowed(str(key), node_selector_keys):
            errors.append(f"{path}.nodeSelector.{key}: node selector key {key} is not allowed in this cluster "
                          f"(allowed: {_listed(node_selector_keys)}); remove it, or ask the cluster administrator "
                          "to add it to the Helm value placement.allowedNodeSelectorKeys")
    return errors


def _node_affinity_keys(affinity: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    """(path, key) of every node requirement in a node affinity, required terms and preferences alike."""
    node: Mapping[str, Any] = affinity.get("nodeAffinity") or {}
    required: Mapping[str, Any] = node.get("requiredDuringSchedulingIgnoredDuringExecution") or {}
    terms = [(f"requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[{i}]", term)
             for i, term in enumerate(required.get("nodeSelectorTerms") or [])]
    terms += [(f"preferredDuringSchedulingIgnoredDuringExecution[{i}].preference", preferred.get("preference") or {})
              for i, preferred in enumerate(node.get("preferredDuringSchedulingIgnoredDuringExecution") or [])]
    for where, term in terms:
        for field in ("matchExpressions", "matchFields"):
            for index, requirement in enumerate(term.get(field) or []):
                yield f"{where}.{field}[{index}]", str(requirement.get("key") or "")


def _reserved(key: str, patterns: Iterable[str]) -> bool:
    return any(fnmatch.fnmatchcase(key, pattern) for pattern in patterns)


def scheduling_errors(scheduling: object, *, node_selector_keys: tuple[str, ...], priority_classes: tuple[str, ...],
                      path: str = "spec.scheduling") -> list[str]:
    """Problems of a (schema-valid) ``scheduling`` object against the administrator's limits."""
    if not isinstance(scheduling, Mapping):
        return []
    errors: list[str] = []
    for where, key in _node_affinity_keys(scheduling.get("affinity") or {}):
        if not _allowed(key, node_selector_keys):
            errors.append(f"{path}.affinity.nodeAffinity.{where}: node key {key} is not allowed in this cluster "
                          f"(allowed: {_listed(node_selector_keys)}); remove it, or ask the cluster administrator "
                          "to add it to the Helm value placement.allowedNodeSelectorKeys")
    priority_class = scheduling.get("priorityClassName")
    if priority_class and not any(fnmatch.fnmatchcase(str(priority_class), p) for p in priority_classes):
        errors.append(f"{path}.priorityClassName: priority class {priority_class} is not allowed in this cluster "
                      f"(allowed: {_listed(priority_classes)}); remove it, or ask the cluster administrator to add "
                      "it to the Helm value placement.allowedPriorityClasses")
    for field, reserved in (("podLabels", RESERVED_POD_LABELS), ("podAnnotations", RESERVED_POD_ANNOTATIONS)):
        for key in scheduling.get(field) or {}:
            if _reserved(str(key), reserved):
                errors.append(f"{path}.{field}.{key}: {key} is the operator's or Kubernetes' own and cannot be "
                              f"set here (reserved: {', '.join(reserved)}); use another key")
    return errors
