"""Keeping an SDXLDeployment's autoscaler: a HorizontalPodAutoscaler, or a KEDA ScaledObject; never both.

The operator's settings choose the kind (the chart's ``keda.enabled``: a cluster either runs KEDA or
not, and the administrator knows), the spec chooses the range and the metric. So there is nothing a
user can ask for that the cluster cannot do, and no spec field to refuse.

On every pass the autoscaler of the chosen kind, if one stands under the deployment's name, must be
this deployment's own (else the deployment is blocked by a NameConflict, as for the Service). When the
spec changed or the operator (re)started, this deployment's own autoscaler of the *other* kind is
deleted first (the chart was switched, or is switched back): two autoscalers would fight over one
Deployment, and KEDA's admission webhook refuses a ScaledObject whose Deployment an HPA already scales.
Then the chosen one is created or patched, or deleted when ``spec.autoscaling`` was removed. Another
application's object of either kind is never touched.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import kopf

from sdxl_operator.core.naming import deployment_name
from sdxl_operator.core.settings import OperatorSettings
from sdxl_operator.handlers.child_creation import ChildRejected, create_child, is_refusal, refusal
from sdxl_operator.handlers.child_ownership import is_controlled_by, require_controlled
from sdxl_operator.handlers.kube_api import KubeApi, KubeApiError
from sdxl_operator.manifests import scaled_object
from sdxl_operator.manifests.autoscaler import build_autoscaler

HPA = "HorizontalPodAutoscaler"
SCALED_OBJECT = scaled_object.KIND


def desired_autoscaler(owner: Mapping[str, Any], resolved: Mapping[str, Any], settings: OperatorSettings
                       ) -> tuple[str, dict[str, Any] | None]:
    """(the kind this operator uses, its manifest or None without ``spec.autoscaling``)."""
    if settings.keda:
        return SCALED_OBJECT, scaled_object.build_scaled_object(
            owner, resolved, prometheus_address=settings.keda_prometheus_address or "")
    return HPA, build_autoscaler(owner, resolved)


async def ensure_autoscaler(api: KubeApi, owner: Mapping[str, Any], resolved: Mapping[str, Any],
                            settings: OperatorSettings, logger: kopf.Logger, *, write: bool) -> None:
    """Check the autoscaler is this deployment's own; with ``write``, bring both kinds to the spec."""
    namespace = owner["metadata"]["namespace"]
    name = deployment_name(owner["metadata"]["name"])
    kind, desired = desired_autoscaler(owner, resolved, settings)
    existing = await api.read(kind, namespace, name)
    if desired is not None and existing is not None:
        require_controlled(existing, owner, kind)
    if not write:
        return
    other = SCALED_OBJECT if kind == HPA else HPA
    await _delete_own(api, owner, other, namespace, name, logger, f"this operator now scales with a {kind}")
    if desired is None:
        if existing is not None:
            await _delete_own(api, owner, kind, namespace, name, logger, "spec.autoscaling was removed", existing)
    elif existing is None:
        await _create(api, desired, owner, logger)
    else:
        try:
            await api.patch(kind, namespace, name, {"spec": desired["spec"]})
        except KubeApiError as exc:
            if is_refusal(exc):
                raise refusal(exc) from exc
            raise


async def _delete_own(api: KubeApi, owner: Mapping[str, Any], kind: str, namespace: str, name: str,
                      logger: kopf.Logger, why: str, found: Mapping[str, Any] | None = None) -> None:
    """Delete ``kind``/``name`` only when this deployment controls it; another application's stays."""
    found = found if found is not None else await api.read(kind, namespace, name)
    if found is not None and is_controlled_by(found, owner) and await api.delete(kind, namespace, name):
        logger.info(f"deleted {kind} {name}: {why}")


async def _create(api: KubeApi, desired: Mapping[str, Any], owner: Mapping[str, Any], logger: kopf.Logger) -> None:
    try:
        await create_child(api, desired, owner, logger)
    except ChildRejected as exc:
        cause = exc.__cause__
        if desired["kind"] == SCALED_OBJECT and isinstance(cause, KubeApiError) and cause.status == 404:
            # The API has no such resource: KEDA (its CRDs) is not installed where the chart says it is.
            raise ChildRejected(
                f"the cluster does not serve {scaled_object.API_VERSION} ScaledObjects, so the KEDA autoscaler "
                "cannot be created: install KEDA, or set the operator chart's keda.enabled=false to get a "
                "HorizontalPodAutoscaler instead") from cause
        raise
