"""Whether this operator replica stands by for another one (Kopf peering).

Kopf pauses a replica's watches and handlers while a live peer of higher priority holds the same peering
object (``ClusterKopfPeering``, or a ``KopfPeering`` per served namespace); it does not tell the
operator's own background tasks (the status ticks, the resync). Those read the peering object the way Kopf does and skip their work
while a peer leads, so that only the active replica writes statuses.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping, Sequence
from typing import Any

import kopf

from sdxl_operator.handlers.kube_api import KubeApi

PEERING_GROUP, PEERING_VERSION = "kopf.dev", "v1"


def led_by_peer(peering: Mapping[str, Any] | None, own_priority: int, now: datetime.datetime) -> bool:
    """Whether the peering object names a live peer of higher priority than ``own_priority``."""
    for peer in ((peering or {}).get("status") or {}).values():
        if not isinstance(peer, Mapping) or int(peer.get("priority") or 0) <= own_priority:
            continue
        try:
            last_seen = datetime.datetime.fromisoformat(str(peer.get("lastseen")))
        except ValueError:
            continue
        if last_seen.tzinfo is None:  # Kopf writes UTC without an offset
            last_seen = last_seen.replace(tzinfo=datetime.timezone.utc)
        if last_seen + datetime.timedelta(seconds=float(peer.get("lifetime") or 60)) > now:
            return True
    return False


async def standing_by(api: KubeApi, settings: kopf.OperatorSettings, namespaces: Sequence[str]) -> bool:
    """Whether Kopf has paused this replica in favour of a peer (never when it runs standalone)."""
    if settings.peering.standalone or not settings.peering.name:
        return False
    now = datetime.datetime.now(tz=datetime.timezone.utc)
    name, priority = settings.peering.name, settings.peering.priority
    if settings.peering.clusterwide:
        peering = await api.read_cluster_custom(PEERING_GROUP, PEERING_VERSION, "clusterkopfpeerings", name)
        return led_by_peer(peering, priority, now)
    for namespace in namespaces:
        peering = await api.read_custom(PEERING_GROUP, PEERING_VERSION, "kopfpeerings", namespace, name)
        if led_by_peer(peering, priority, now):
            return True
    return False
