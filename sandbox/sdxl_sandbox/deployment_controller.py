"""The Deployment controller of the sandbox: replicas, rolling updates and the Deployment's status.

Simplified from Kubernetes' (no ReplicaSets: the Deployment owns its pods directly, so deleting it
garbage-collects them just the same). Pods carry the template's labels and annotations plus
``pod-template-hash``, a digest of the pod template. A rollout follows the strategy the operator
writes (``maxSurge`` 1, ``maxUnavailable`` 0): a pod of the new template is added, and the old pods
are deleted only once the new ones are ready, so the old ones serve meanwhile. Status: ``replicas``,
``updatedReplicas``, ``readyReplicas``, ``availableReplicas``, ``observedGeneration`` and the
``Available`` / ``Progressing`` conditions, as ``kubectl rollout status`` reads them.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Callable, Mapping
from typing import Any

from sdxl_sandbox.api_client import KubeClient
from sdxl_sandbox.job_controller import owned_by, pod_from_template
from sdxl_sandbox.kubelet import now_rfc3339

TEMPLATE_HASH_LABEL = "pod-template-hash"


def template_hash(deployment: Mapping[str, Any]) -> str:
    """A short digest of the pod template (what makes a rollout)."""
    template = json.dumps(deployment["spec"]["template"], sort_keys=True).encode("utf-8")
    return hashlib.sha256(template).hexdigest()[:10]


class DeploymentController:
    """Reconciles every Deployment; ``is_ready(pod)`` says whether the kubelet finds a pod ready."""

    def __init__(self, client: KubeClient, is_ready: Callable[[Mapping[str, Any]], bool]) -> None:
        self._client = client
        self._is_ready = is_ready

    async def sync(self, deployments: list[dict[str, Any]], pods: list[dict[str, Any]]) -> None:
        for deployment in deployments:
            await self._sync_deployment(deployment, owned_by(pods, deployment))

    async def _sync_deployment(self, deployment: dict[str, Any], pods: list[dict[str, Any]]) -> None:
        spec = deployment.get("spec") or {}
        wanted = int(spec.get("replicas", 1))
        current_hash = template_hash(deployment)
        pods = [pod for pod in pods if not pod["metadata"].get("deletionTimestamp")]
        new = [p for p in pods if (p["metadata"].get("labels") or {}).get(TEMPLATE_HASH_LABEL) == current_hash]
        old = [p for p in pods if p not in new]
        ready_new = [p for p in new if self._is_ready(p)]

        # Scale the new template up (one extra pod at most during a rollout), then retire the old
        # pods once the new ones can carry the load, then trim any surplus (unready ones first).
        if len(new) < wanted and len(new) + len(old) < wanted + 1:
            await self._create_pod(deployment, current_hash)
            return  # the next pass sees the new pod
        if old and len(ready_new) >= wanted:
            for pod in old:
                await self._client.delete(pod)
            old = []
        if len(new) > wanted:
            surplus = sorted(new, key=lambda p: (self._is_ready(p), p["metadata"]["name"]))[:len(new) - wanted]
            for pod in surplus:
                await self._client.delete(pod)
            new = [p for p in new if p not in surplus]
            ready_new = [p for p in ready_new if p not in surplus]

        ready = [p for p in new + old if self._is_ready(p)]
        complete = len(new) == wanted and len(ready_new) == wanted and not old
        available = len(ready) >= wanted
        now = now_rfc3339()
        previous = {c.get("type"): c for c in (deployment.get("status") or {}).get("conditions") or []}

        def condition(kind: str, flag: bool, reason: str, message: str) -> dict[str, Any]:
            status = "True" if flag else "False"
            before = previous.get(kind) or {}
            unchanged = before.get("status") == status and before.get("reason") == reason
            return {"type": kind, "status": status, "reason": reason, "message": message,
                    "lastUpdateTime": before.get("lastUpdateTime", now) if unchanged else now,
                    "lastTransitionTime": before.get("lastTransitionTime", now)
                    if before.get("status") == status else now}

        name = deployment["metadata"]["name"]
        conditions = [
            condition("Available", available,
                      "MinimumReplicasAvailable" if available else "MinimumReplicasUnavailable",
                      "Deployment has minimum availability." if available
                      else "Deployment does not have minimum availability."),
            condition("Progressing", True, "NewReplicaSetAvailable" if complete else "ReplicaSetUpdated",
                      f'ReplicaSet "{name}-{current_hash}" has successfully progressed.' if complete
                      else f'ReplicaSet "{name}-{current_hash}" is progressing.'),
        ]
        status: dict[str, Any] = {
            "observedGeneration": int(deployment["metadata"].get("generation") or 1),
            "replicas": len(new) + len(old), "updatedReplicas": len(new), "readyReplicas": len(ready),
            "availableReplicas": len(ready), "unavailableReplicas": max(0, wanted - len(ready)),
            "conditions": conditions,
        }
        before = deployment.get("status") or {}
        if any(before.get(key) != value for key, value in status.items() if key != "conditions") or \
                [(c["type"], c["status"], c["reason"]) for c in conditions] != \
                [(c.get("type"), c.get("status"), c.get("reason")) for c in before.get("conditions") or []]:
            await self._client.patch_status(deployment, status)

    async def _create_pod(self, deployment: Mapping[str, Any], current_hash: str) -> None:
        name = f"{deployment['metadata']['name']}-{current_hash}-{uuid.uuid4().hex[:5]}"
        await self._client.create(pod_from_template(deployment, name, {TEMPLATE_HASH_LABEL: current_hash}))
