"""The operator follows its children's changes instead of polling them.

Every child the operator labels ``app.kubernetes.io/managed-by: sdxl-operator`` (Jobs, their pods,
Deployments and their pods, Services, ConfigMaps, HorizontalPodAutoscalers, NetworkPolicies) is
watched, with that label as a server-side selector (:data:`CHILD_SELECTOR`: the API server sends only
these objects). A change of one asks for its owner's status to be recomputed
(:class:`~sdxl_operator.handlers.status_refresh.StatusRefresher`):

* ``sdxl.io/finetune: <ft>`` → that SDXLFineTune, while its run is unfinished (a finished run's
  status never changes: its Job expiring or its pods going away ask for nothing);
* ``sdxl.io/deployment: <dep>`` → that SDXLDeployment; a compile Job (and its pods) also → every
  SDXLDeployment that follows it (``status.compileJob``), since deployments with the same compile key
  share one Job.

The owners are found in two Kopf indexes over the custom resources (label value → name, compile Job
→ followers), kept from the watches the operator has anyway: no request per child event.

Only changes count. An object the operator just created (``ADDED``, but for pods, which controllers
create) was accounted for by the handler that created it. Kopf lists every watched object again when
a watch cannot be resumed (``410 Gone``, normal after a quiet spell); those listings repeat objects
unchanged, and only a resourceVersion the operator has not seen for an object asks for a refresh.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import kopf

from sdxl_operator.core.custom_resources import DEPLOYMENTS, FINETUNES, GROUP, VERSION
from sdxl_operator.core.labels import (
    COMPILER,
    DEPLOYMENT_KEY,
    FINETUNE_KEY,
    JOB_NAME_KEY,
    MANAGED_BY,
    MANAGED_BY_KEY,
    NAME_KEY,
)
from sdxl_operator.core.naming import label_value
from sdxl_operator.handlers.status_refresh import StatusRefresher
from sdxl_operator.status.finetune_status import is_terminal

# (group, version, plural) of every kind of child the operator creates, or whose pods it reads.
CHILD_RESOURCES: tuple[tuple[str, str, str], ...] = (
    ("batch", "v1", "jobs"),
    ("", "v1", "pods"),
    ("apps", "v1", "deployments"),
    ("", "v1", "services"),
    ("", "v1", "configmaps"),
    ("autoscaling", "v2", "horizontalpodautoscalers"),
    ("networking.k8s.io", "v1", "networkpolicies"),
)
CHILD_SELECTOR = f"{MANAGED_BY_KEY}={MANAGED_BY}"
# Kinds that only the operator creates: their ADDED event tells it nothing new.
_CREATED_BY_OPERATOR = frozenset({"Job", "Deployment", "Service", "ConfigMap", "HorizontalPodAutoscaler",
                                  "NetworkPolicy"})
_LABEL = "label"
_COMPILE_JOB = "compileJob"


def watch_children_only(settings: kopf.OperatorSettings) -> None:
    """Ask the API server for the operator's own children only, on every child watch."""
    for resource in CHILD_RESOURCES:
        settings.watching.label_selectors[resource] = CHILD_SELECTOR


class SeenVersions:
    """The last resourceVersion seen of each child: tells a change from a repeat of a listing."""

    def __init__(self) -> None:
        self._versions: dict[str, str] = {}

    def changed(self, body: Mapping[str, Any], event_type: str | None) -> bool:
        meta = body.get("metadata") or {}
        uid = str(meta.get("uid") or f"{body.get('kind')}/{meta.get('namespace')}/{meta.get('name')}")
        if event_type == "DELETED":
            self._versions.pop(uid, None)
            return True
        version = str(meta.get("resourceVersion") or "")
        previous = self._versions.get(uid)
        self._versions[uid] = version
        if event_type is None:  # a listing: at start-up (the resume handlers cover it), or after 410 Gone
            return previous is not None and previous != version
        if event_type == "ADDED" and body.get("kind") in _CREATED_BY_OPERATOR:
            return False
        return previous != version

    def __len__(self) -> int:
        return len(self._versions)


def _names(index: kopf.Index[Any, Any], key: Any) -> Iterable[Any]:
    return list(index.get(key, ()))


def register_child_watch(registry: kopf.OperatorRegistry, *, finetunes: StatusRefresher,
                         deployments: StatusRefresher) -> None:
    """Register the indexes of owners and the event handlers of every child kind on ``registry``."""
    seen = SeenVersions()

    # Explicit ids: Kopf passes an index to handlers under its id, which otherwise is the qualified name.
    @kopf.index(GROUP, VERSION, FINETUNES, registry=registry, id="finetune_owners")
    def finetune_owners(namespace: str | None, name: str | None, status: Mapping[str, Any], **_: Any
                        ) -> dict[tuple[str, str], tuple[str, bool]]:
        """(namespace, label value) → (name, finished)."""
        if not namespace or not name:
            return {}
        return {(namespace, label_value(name)): (name, is_terminal(status))}

    @kopf.index(GROUP, VERSION, DEPLOYMENTS, registry=registry, id="deployment_owners")
    def deployment_owners(namespace: str | None, name: str | None, status: Mapping[str, Any], **_: Any
                          ) -> dict[tuple[str, str, str], str]:
        """(namespace, "label", label value) and (namespace, "compileJob", Job name) → name."""
        if not namespace or not name:
            return {}
        keys = {(namespace, _LABEL, label_value(name)): name}
        if status.get("compileJob"):
            keys[(namespace, _COMPILE_JOB, str(status["compileJob"]))] = name
        return keys

    async def child_changed(body: kopf.Body, type: str | None, namespace: str | None,
                            finetune_owners: kopf.Index[tuple[str, str], tuple[str, bool]] | None = None,
                            deployment_owners: kopf.Index[tuple[str, str, str], str] | None = None,
                            **_: Any) -> None:
        # Kopf passes every index of the registry to every handler, by the index function's name.
        if not namespace or finetune_owners is None or deployment_owners is None or not seen.changed(body, type):
            return
        labels: Mapping[str, str] = body.get("metadata", {}).get("labels") or {}
        if FINETUNE_KEY in labels:
            for name, finished in _names(finetune_owners, (namespace, labels[FINETUNE_KEY])):
                if not finished:
                    finetunes.request(namespace, name)
        owners: set[str] = set()
        if DEPLOYMENT_KEY in labels:
            owners.update(_names(deployment_owners, (namespace, _LABEL, labels[DEPLOYMENT_KEY])))
        if labels.get(NAME_KEY) == COMPILER:
            job = body.get("metadata", {}).get("name") if body.get("kind") == "Job" else labels.get(JOB_NAME_KEY)
            if job:
                owners.update(_names(deployment_owners, (namespace, _COMPILE_JOB, str(job))))
        for name in sorted(owners):
            deployments.request(namespace, name)

    for group, version, plural in CHILD_RESOURCES:
        kopf.on.event(group, version, plural, registry=registry, labels={MANAGED_BY_KEY: MANAGED_BY},
                      id=f"child_changed/{plural}")(child_changed)

    # What the refreshers keep per resource (a lock, when it was last refreshed) goes with the resource.
    @kopf.on.event(GROUP, VERSION, FINETUNES, registry=registry, id="forget_finetune")
    async def forget_finetune(type: str | None, namespace: str | None, name: str | None, **_: Any) -> None:
        if type == "DELETED" and namespace and name:
            finetunes.forget(namespace, name)

    @kopf.on.event(GROUP, VERSION, DEPLOYMENTS, registry=registry, id="forget_deployment")
    async def forget_deployment(type: str | None, namespace: str | None, name: str | None, **_: Any) -> None:
        if type == "DELETED" and namespace and name:
            deployments.forget(namespace, name)

    @kopf.on.cleanup(registry=registry)
    async def stop_refreshes(**_: Any) -> None:
        await finetunes.close()
        await deployments.close()
