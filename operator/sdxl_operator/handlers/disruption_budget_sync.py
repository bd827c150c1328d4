"""Keeping an SDXLDeployment's PodDisruptionBudget (:mod:`inference_disruption_budget`) to its replicas.

On every serving pass: with more than one replica (or autoscaling above one) the budget is created, or
this deployment's own one is brought back to the builder's spec; another application's object of that
name is a NameConflict, as for the Service. With one replica left, this deployment's own budget is
deleted (it could only block the drain of its pod's node); another application's is never touched.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import kopf

from sdxl_operator.core.naming import deployment_name
from sdxl_operator.handlers.child_creation import create_child, is_refusal, refusal
from sdxl_operator.handlers.child_ownership import is_controlled_by, require_controlled
from sdxl_operator.handlers.kube_api import KubeApi, KubeApiError
from sdxl_operator.manifests.inference_disruption_budget import (
    build_disruption_budget,
    wants_disruption_budget,
)

KIND = "PodDisruptionBudget"


async def ensure_disruption_budget(api: KubeApi, owner: Mapping[str, Any], resolved: Mapping[str, Any],
                                   logger: kopf.Logger) -> None:
    """Create, correct or delete the deployment's own PodDisruptionBudget for ``resolved``'s replicas."""
    namespace = owner["metadata"]["namespace"]
    name = deployment_name(owner["metadata"]["name"])
    existing = await api.read(KIND, namespace, name)
    if not wants_disruption_budget(resolved):
        if existing is not None and is_controlled_by(existing, owner) and await api.delete(KIND, namespace, name):
            logger.info(f"deleted {KIND} {name}: one server pod left")
        return
    desired = build_disruption_budget(owner)
    if existing is None:
        await create_child(api, desired, owner, logger)
        return
    require_controlled(existing, owner, KIND)
    current = {key: (existing.get("spec") or {}).get(key) for key in desired["spec"]}
    if current != desired["spec"]:
        try:
            await api.patch(KIND, namespace, name, {"spec": desired["spec"]})
        except KubeApiError as exc:
            if is_refusal(exc):
                raise refusal(exc) from exc
            raise
        logger.info(f"patched {KIND} {name} to the operator's budget")
