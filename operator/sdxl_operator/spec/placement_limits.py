"""Which tolerations and node selectors a custom resource may ask for (the administrator's limits).

``spec.resources.tolerations`` and ``spec.resources.nodeSelector`` decide which nodes a pod may land
on; without limits any author of a custom resource could put work onto control-plane nodes or a
pool meant for someone else. The administrator lists the allowed keys as globs
(``SDXL_ALLOWED_TOLERATION_KEYS`` / ``SDXL_ALLOWED_NODE_SELECTOR_KEYS``, Helm values
``placement.allowedTolerationKeys`` / ``placement.allowedNodeSelectorKeys``); the defaults are the
keys of the pools the operator's own work uses. Always refused, whatever the lists say: the control
plane's ``node-role.kubernetes.io/*`` keys, and a toleration without a key (it tolerates every taint).
The operator's own node pools (Helm ``nodePools``) are the administrator's and are not checked. Pure.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Mapping
from typing import Any

ALWAYS_REFUSED = ("node-role.kubernetes.io/*",)


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
