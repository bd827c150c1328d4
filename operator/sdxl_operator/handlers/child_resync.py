"""A slow safety-net resync of the operator's children.

The watches (:mod:`child_watch`) carry every change of a child to its owner's status. Should one lose
an event (a bug, a proxy that drops a stream mid-way), a Ready SDXLDeployment or a running
SDXLFineTune could keep a stale status until its next change. So every ``--resync-interval`` seconds
(Helm ``operator.resyncInterval``; default :data:`DEFAULT_RESYNC_SECONDS`, 0 turns it off) the operator
LISTs each child kind once, as an informer relists: the operator's label selector, pages of
:data:`PAGE_LIMIT`, cluster-wide or once per watched namespace. Every object goes through the same
check as a watch's listing (:meth:`~child_watch.SeenVersions.changed`): only a resourceVersion the
watches have not seen asks for its owner's refresh. A remembered child the listing lacks is taken as
deleted (its owners are refreshed, and it is forgotten). A difference counts only if the watches have
not delivered it :data:`SETTLE_SECONDS` later (a LIST can be ahead of a watch by an event in flight);
a pass keeps only the few objects that differ, never the whole listing.

Cost: seven LIST requests per interval and per namespace served (cluster-wide: seven), whatever the
number of resources; no request per object. The first pass comes after a random part of the interval
(replicas started together do not list together), an error never ends the loop, and a replica that
Kopf pauses for a peer (:mod:`peering_pause`) skips its passes. A pass that finds nothing logs at
DEBUG; one that finds a change logs it at INFO: a watch lost that event.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

import kopf

from sdxl_operator.handlers.child_watch import (
    CHILD_RESOURCES,
    CHILD_SELECTOR,
    KIND_OF_CHILD_PLURAL,
    ChildChanges,
    ChildRef,
    DeploymentOwners,
    FinetuneOwners,
    routing_part,
    uid_of,
)
from sdxl_operator.handlers.operator_context import OperatorContext
from sdxl_operator.handlers.peering_pause import standing_by

# 30 minutes: a lost event is rare (watches are re-opened every 10 minutes anyway), so a stale status
# for up to half an hour is the worst case, and 14 LISTs an hour cost the API server nothing noticeable.
DEFAULT_RESYNC_SECONDS = 1800.0
# Objects per LIST page, as client-go's informers page their relists.
PAGE_LIMIT = 500

# (kind, namespace or None for every namespace) → the pages of the objects of that kind with the operator's label.
ListChildren = Callable[[str, str | None], AsyncIterator[list[dict[str, Any]]]]
# How long a difference between a listing and the watches waits before it counts as a lost event: a watch
# event is normally delivered within milliseconds of the change.
SETTLE_SECONDS = 5.0
logger = logging.getLogger(__name__)


def _older(listed: str, remembered: str | None) -> bool:
    """Whether a listed object is older than what a watch delivered while the LIST ran.

    resourceVersions are opaque to clients, but every API server backed by etcd hands out increasing
    integers; where both are integers this keeps a listing from undoing a newer watch event.
    """
    return remembered is not None and listed.isdigit() and remembered.isdigit() and int(listed) < int(remembered)


class ChildResync:
    """One resync pass over every child kind (:meth:`run_once`), and the loop that repeats it."""

    def __init__(self, changes: ChildChanges, list_children: ListChildren,
                 namespaces: Sequence[str] | None = None) -> None:
        self._changes = changes
        self._list = list_children
        self._namespaces: Sequence[str | None] = list(namespaces) if namespaces else [None]

    async def run_once(self, finetune_owners: FinetuneOwners, deployment_owners: DeploymentOwners,
                       settle_seconds: float = 0.0) -> list[str]:
        """List every child kind and refresh the owners of what changed unseen; what changed, in words.

        A difference is judged ``settle_seconds`` after the listings: a watch event under way while a LIST
        ran (the listing ahead of the watch) arrives meanwhile, and is no lost event.
        """
        seen = self._changes.seen
        newer: list[tuple[str, dict[str, Any]]] = []  # (uid, the part of the body the routing reads)
        missing: list[tuple[str, ChildRef]] = []
        for _, _, plural in CHILD_RESOURCES:
            kind = KIND_OF_CHILD_PLURAL[plural]
            # Taken before the LIST: a child the watches report while it runs is not "missing" from it.
            remembered = seen.remembered(kind)
            try:
                for namespace in self._namespaces:
                    async for page in self._list(kind, namespace):
                        for listed in page:  # one page at a time: only what differs is kept
                            # List items carry no kind, or (metadata only) PartialObjectMetadata.
                            item = routing_part(listed, kind)
                            uid = uid_of(item)
                            remembered.pop(uid, None)
                            version = str((item.get("metadata") or {}).get("resourceVersion") or "")
                            known = seen.version(uid)
                            if known is None:
                                seen.changed(item, None)  # remembered from now on, as a watch's listing does
                            elif version != known and not _older(version, known):
                                newer.append((uid, item))
            except Exception as exc:  # this kind waits for the next pass; the others go on
                logger.warning(f"resync: cannot list the operator's {kind}s ({exc}); trying again next pass")
                newer = [(uid, body) for uid, body in newer if body["kind"] != kind]
                continue
            missing.extend(remembered.items())
        if settle_seconds and (newer or missing):
            await asyncio.sleep(settle_seconds)
        found: list[str] = []
        for uid, body in newer:
            version = body["metadata"]["resourceVersion"]
            if _older(version, seen.version(uid)) or not seen.changed(body, None):
                continue  # the watch delivered it (or a newer one) meanwhile
            found.append(f"{body['kind']} {body['metadata']['namespace']}/{body['metadata']['name']} changed")
            self._changes.request_owner_refreshes(body, finetune_owners, deployment_owners)
        for uid, ref in missing:
            if seen.version(uid) is None:
                continue  # its DELETED event came meanwhile
            seen.forget(uid)
            found.append(f"{ref.kind} {ref.namespace}/{ref.name} is gone")
            self._changes.request_owner_refreshes(ref.body(), finetune_owners, deployment_owners)
        if found:
            logger.info(f"resync: the watches missed {len(found)} change(s): {'; '.join(found[:10])}"
                        + (" ..." if len(found) > 10 else ""))
        else:
            logger.debug(f"resync: nothing changed unseen ({len(seen)} children known)")
        return found

    async def run_forever(self, interval: float, finetune_owners: FinetuneOwners,
                          deployment_owners: DeploymentOwners,
                          standing_by: Callable[[], Awaitable[bool]] | None = None) -> None:
        """A pass every ``interval`` seconds, the first after a random part of it, until cancelled."""
        await asyncio.sleep(interval * random.uniform(0.5, 1.0))
        while True:
            try:
                if standing_by is not None and await standing_by():
                    logger.debug("resync: another operator replica is active; skipping this pass")
                else:
                    await self.run_once(finetune_owners, deployment_owners, min(SETTLE_SECONDS, interval / 4))
            except asyncio.CancelledError:
                raise
            except Exception:  # the safety net must outlive any one failure
                logger.exception("resync: the pass failed; trying again next interval")
            await asyncio.sleep(interval)


async def list_pages(list_page: Callable[..., Awaitable[tuple[list[dict[str, Any]], str | None]]],
                     kind: str, namespace: str | None) -> AsyncIterator[list[dict[str, Any]]]:
    """The objects of ``kind`` with the operator's label, their metadata only, page after page
    (``KubeApi.list_page``)."""
    token: str | None = None
    while True:
        page, token = await list_page(kind, namespace, CHILD_SELECTOR, PAGE_LIMIT, token, metadata_only=True)
        yield page
        if not token:
            return

def register_child_resync(registry: kopf.OperatorRegistry, changes: ChildChanges, context: OperatorContext, *,
                          interval: float, namespaces: Sequence[str] | None) -> None:
    """Run the resync every ``interval`` seconds (0: never) while the operator runs, over ``namespaces``
    (None or empty: cluster-wide)."""
    if interval <= 0:
        return
    if namespaces and any(set(pattern) & set("*?[!,") for pattern in namespaces):
        # Kopf expands such patterns by watching namespaces; a LIST needs exact names.
        logger.warning(f"resync: off, since the namespaces {list(namespaces)} are patterns; name them exactly "
                       "to have the safety-net resync")
        return
    resync = ChildResync(changes, lambda kind, namespace: list_pages(context.api.list_page, kind, namespace),
                         namespaces)
    running: list[asyncio.Task[None]] = []

    # Kopf hands startup handlers the (live, still empty) indexes too: the loop reads them as they fill.
    @kopf.on.startup(registry=registry, id="start_child_resync")
    async def start_child_resync(settings: kopf.OperatorSettings, **indexes: Any) -> None:
        async def paused() -> bool:
            return await standing_by(context.api, settings, list(namespaces or ()))

        finetune_owners: FinetuneOwners = indexes["finetune_owners"]
        deployment_owners: DeploymentOwners = indexes["deployment_owners"]
        running.append(asyncio.get_running_loop().create_task(
            resync.run_forever(interval, finetune_owners, deployment_owners, paused), name="child resync"))

    @kopf.on.cleanup(registry=registry, id="stop_child_resync")
    async def stop_child_resync(**_: Any) -> None:
        while running:
            task = running.pop()
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
