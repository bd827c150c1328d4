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
The safety-net resync (:mod:`child_resync`) feeds its own listings through the same check
(:class:`ChildChanges`).
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

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
# Kind of each child resource (plural → kind): the watches send metadata only
# (:mod:`metadata_only_watches`), whose objects are all of kind PartialObjectMetadata.
KIND_OF_CHILD_PLURAL = {
    "jobs": "Job", "pods": "Pod", "deployments": "Deployment", "services": "Service", "configmaps": "ConfigMap",
    "horizontalpodautoscalers": "HorizontalPodAutoscaler", "networkpolicies": "NetworkPolicy",
}
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


# The labels that name a child's owners: all a deleted child's owners can be found from.
_OWNER_LABELS = (FINETUNE_KEY, DEPLOYMENT_KEY, NAME_KEY, JOB_NAME_KEY)


class ChildRef(NamedTuple):
    """What is remembered of a child besides its resourceVersion: enough to find its owners once it is gone."""

    kind: str
    namespace: str
    name: str
    owner_labels: tuple[tuple[str, str], ...]

    @classmethod
    def of(cls, body: Mapping[str, Any]) -> ChildRef:
        meta = body.get("metadata") or {}
        labels: Mapping[str, str] = meta.get("labels") or {}
        # Interned: thousands of children share a few kinds and namespaces.
        return cls(sys.intern(str(body.get("kind") or "")), sys.intern(str(meta.get("namespace") or "")),
                   str(meta.get("name") or ""),
                   tuple((key, labels[key]) for key in _OWNER_LABELS if key in labels))

    def body(self) -> dict[str, Any]:
        """The part of the child's body :meth:`ChildChanges.request_owner_refreshes` reads."""
        return {"kind": self.kind, "metadata": {"namespace": self.namespace, "name": self.name,
                                                "labels": dict(self.owner_labels)}}


def routing_part(item: Mapping[str, Any], kind: str) -> dict[str, Any]:
    """What the routing reads of a child of ``kind`` (whole, or its metadata only): its kind, name,
    namespace, owner labels, uid and resourceVersion. Keeps no more of it than that."""
    meta = item.get("metadata") or {}
    body = ChildRef.of({**item, "kind": kind}).body()
    body["metadata"].update(uid=meta.get("uid"), resourceVersion=str(meta.get("resourceVersion") or ""))
    return body


def uid_of(body: Mapping[str, Any]) -> str:
    meta = body.get("metadata") or {}
    return str(meta.get("uid") or f"{body.get('kind')}/{meta.get('namespace')}/{meta.get('name')}")


class SeenVersions:
    """The last resourceVersion seen of each child: tells a change from a repeat of a listing."""

    def __init__(self) -> None:
        self._versions: dict[str, tuple[str, ChildRef]] = {}

    def changed(self, body: Mapping[str, Any], event_type: str | None) -> bool:
        meta = body.get("metadata") or {}
        uid = uid_of(body)
        if event_type == "DELETED":
            self._versions.pop(uid, None)
            return True
        version = str(meta.get("resourceVersion") or "")
        previous, _ = self._versions.get(uid, (None, None))
        self._versions[uid] = (version, ChildRef.of(body))
        if event_type is None:  # a listing: at start-up (the resume handlers cover it), or after 410 Gone
            return previous is not None and previous != version
        if event_type == "ADDED" and body.get("kind") in _CREATED_BY_OPERATOR:
            return False
        return previous != version

    def version(self, uid: str) -> str | None:
        """The resourceVersion last seen of a child, None if it is not remembered."""
        return self._versions[uid][0] if uid in self._versions else None

    def remembered(self, kind: str) -> dict[str, ChildRef]:
        """Every remembered child of ``kind``, by uid (a copy)."""
        return {uid: ref for uid, (_, ref) in self._versions.items() if ref.kind == kind}

    def forget(self, uid: str) -> None:
        """Forget a child that is gone without a DELETED event (a resync did not find it)."""
        self._versions.pop(uid, None)

    def __len__(self) -> int:
        return len(self._versions)


def _names(index: kopf.Index[Any, Any], key: Any) -> Iterable[Any]:
    return list(index.get(key, ()))


FinetuneOwners = kopf.Index[tuple[str, str], tuple[str, bool]]
DeploymentOwners = kopf.Index[tuple[str, str, str], str]


class ChildChanges:
    """The children seen so far, and the owner refreshes a child's change asks for."""

    def __init__(self, *, finetunes: StatusRefresher, deployments: StatusRefresher) -> None:
        self.seen = SeenVersions()
        self.finetunes = finetunes
        self.deployments = deployments

    def request_owner_refreshes(self, body: Mapping[str, Any], finetune_owners: FinetuneOwners,
                                deployment_owners: DeploymentOwners) -> None:
        """Ask for the status refresh of every owner of the child ``body`` (changed or deleted)."""
        meta = body.get("metadata") or {}
        namespace = meta.get("namespace")
        if not namespace:
            return
        labels: Mapping[str, str] = meta.get("labels") or {}
        if FINETUNE_KEY in labels:
            for name, finished in _names(finetune_owners, (namespace, labels[FINETUNE_KEY])):
                if not finished:
                    self.finetunes.request(namespace, name)
        owners: set[str] = set()
        if DEPLOYMENT_KEY in labels:
            owners.update(_names(deployment_owners, (namespace, _LABEL, labels[DEPLOYMENT_KEY])))
        if labels.get(NAME_KEY) == COMPILER:
            job = meta.get("name") if body.get("kind") == "Job" else labels.get(JOB_NAME_KEY)
            if job:
                owners.update(_names(deployment_owners, (namespace, _COMPILE_JOB, str(job))))
        for name in sorted(owners):
            self.deployments.request(namespace, name)


def register_child_watch(registry: kopf.OperatorRegistry, *, finetunes: StatusRefresher,
                         deployments: StatusRefresher) -> ChildChanges:
    """Register the indexes of owners and the event handlers of every child kind on ``registry``; the
    children seen, for the resync (:mod:`child_resync`)."""
    changes = ChildChanges(finetunes=finetunes, deployments=deployments)

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

    async def child_changed(body: kopf.Body, type: str | None, namespace: str | None, resource: kopf.Resource,
                            finetune_owners: FinetuneOwners | None = None,
                            deployment_owners: DeploymentOwners | None = None, **_: Any) -> None:
        # Kopf passes every index of the registry to every handler, by the index function's name.
        if not namespace or finetune_owners is None or deployment_owners is None:
            return
        child = routing_part(body, KIND_OF_CHILD_PLURAL[resource.plural])
        if changes.seen.changed(child, type):
            changes.request_owner_refreshes(child, finetune_owners, deployment_owners)

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

    return changes
