"""Owner references, so ``kubectl delete`` of a custom resource garbage-collects its children.

Builders put the reference into every child manifest they return, in the same shape as
``kopf.adopt`` writes it (a test checks that adopting a built manifest changes nothing), which keeps
the builders' output complete and comparable as a whole.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def owner_reference(owner: Mapping[str, Any]) -> dict[str, Any]:
    """The controller ownerReference pointing at ``owner`` (a custom resource body)."""
    meta = owner.get("metadata", {})
    return {
        "controller": True,
        "blockOwnerDeletion": True,
        "apiVersion": owner.get("apiVersion"),
        "kind": owner.get("kind"),
        "name": meta.get("name"),
        "uid": meta.get("uid"),
    }


def child_metadata(
    owner: Mapping[str, Any], name: str, labels: Mapping[str, str], annotations: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """``metadata`` of a child: its name, the owner's namespace, labels and the owner reference."""
    meta: dict[str, Any] = {
        "name": name,
        "namespace": owner.get("metadata", {}).get("namespace"),
        "labels": dict(labels),
        "ownerReferences": [owner_reference(owner)],
    }
    if annotations:
        meta["annotations"] = dict(annotations)
    return meta
