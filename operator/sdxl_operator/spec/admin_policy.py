"""The administrator's limits on a schema-valid spec: store prefixes, placement, image counts.

The CRDs say what any cluster accepts; these checks say what *this* cluster's administrator allows
(Helm values → ``SDXL_*`` settings), so the API server cannot enforce them. A spec past them ends like
any invalid spec: phase Failed, reason InvalidSpec, a message naming the field, the limit, and the
Helm value an administrator changes to allow more. Pure.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sdxl_operator.core.settings import OperatorSettings
from sdxl_operator.spec.placement_limits import placement_errors, scheduling_errors
from sdxl_operator.spec.store_tenancy import uri_errors


def _store_errors(uris: Mapping[str, object], namespace: str, settings: OperatorSettings) -> list[str]:
    return uri_errors(uris, namespace=namespace, artifact_store=settings.artifact_store,
                      allowed=settings.tenancy_allowed_prefixes)


def _placement_errors(spec: Mapping[str, Any], settings: OperatorSettings) -> list[str]:
    return placement_errors(spec.get("resources"), toleration_keys=settings.allowed_toleration_keys,
                            node_selector_keys=settings.allowed_node_selector_keys) + \
        scheduling_errors(spec.get("scheduling"), node_selector_keys=settings.allowed_node_selector_keys,
                          priority_classes=settings.allowed_priority_classes)


def finetune_policy_errors(spec: Mapping[str, Any], namespace: str, settings: OperatorSettings) -> list[str]:
    """Problems of a valid SDXLFineTune spec in ``namespace`` under the administrator's limits."""
    prior: Mapping[str, Any] = spec.get("priorPreservation") or {}
    quality: Mapping[str, Any] = spec.get("quality") or {}
    # The quality report's models too: the trainer downloads an s3:// or pvc:// one like any input.
    uris = {"spec.output": spec.get("output"), "spec.instanceImages": spec.get("instanceImages"),
            "spec.baseModel": spec.get("baseModel"), "spec.vae": spec.get("vae"),
            "spec.priorPreservation.classImages": prior.get("classImages"),
            "spec.quality.clipModel": quality.get("clipModel"), "spec.quality.dinoModel": quality.get("dinoModel")}
    errors = _store_errors(uris, namespace, settings) + _placement_errors(spec, settings)
    count = prior.get("numClassImages")
    if isinstance(count, int) and count > settings.max_images:
        errors.append(f"spec.priorPreservation.numClassImages: at most {settings.max_images} in this cluster, got "
                      f"{count} (100-200 is usual); lower it, or ask the cluster administrator to raise the Helm "
                      "value limits.maxImages")
    return errors


def deployment_policy_errors(spec: Mapping[str, Any], namespace: str, settings: OperatorSettings) -> list[str]:
    """Problems of a valid SDXLDeployment spec in ``namespace`` under the administrator's limits."""
    uris = {"spec.lora": spec.get("lora"), "spec.baseModel": spec.get("baseModel")}
    return _store_errors(uris, namespace, settings) + _placement_errors(spec, settings)
