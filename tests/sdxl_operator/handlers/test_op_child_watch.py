"""Which child events ask for a refresh: changes only, not repeats of a listing or the operator's own
creations; and the server-side selector covers every child kind."""

from __future__ import annotations

from typing import Any

import kopf
import pytest

from sdxl_operator.handlers.child_watch import (
    CHILD_RESOURCES,
    CHILD_SELECTOR,
    SeenVersions,
    watch_children_only,
)


def child(kind: str, version: str, uid: str = "u1") -> dict[str, Any]:
    return {"kind": kind, "metadata": {"uid": uid, "name": "x", "namespace": "ns", "resourceVersion": version}}


@pytest.mark.parametrize(("events", "expected"), [
    # A listing at start-up is covered by the resume handlers; a repeat of it (after 410 Gone) changes nothing.
    ([(None, "1"), (None, "1")], [False, False]),
    # ... but a listing that shows a newer version is a change the watch missed.
    ([(None, "1"), (None, "2")], [False, True]),
    # The operator's own creation, then the controllers' updates.
    ([("ADDED", "1"), ("MODIFIED", "2"), ("MODIFIED", "3")], [False, True, True]),
    ([("MODIFIED", "2"), ("MODIFIED", "2")], [True, False]),
    ([("MODIFIED", "2"), ("DELETED", "3")], [True, True]),
])
def test_only_changes_count(events: list[tuple[str | None, str]], expected: list[bool]) -> None:
    seen = SeenVersions()
    assert [seen.changed(child("Job", version), event) for event, version in events] == expected


def test_a_pod_appearing_is_a_change() -> None:
    # Pods are created by the Job and ReplicaSet controllers, not by the operator.
    assert SeenVersions().changed(child("Pod", "1"), "ADDED")


def test_a_deleted_child_is_forgotten() -> None:
    seen = SeenVersions()
    seen.changed(child("Job", "1", uid="a"), "MODIFIED")
    seen.changed(child("Job", "2", uid="a"), "DELETED")
    assert len(seen) == 0


def test_every_child_kind_is_watched_with_the_operators_label_only() -> None:
    settings = kopf.OperatorSettings()
    watch_children_only(settings)
    plurals = {plural for _, _, plural in CHILD_RESOURCES}
    assert {"jobs", "pods", "deployments", "services", "configmaps", "horizontalpodautoscalers",
            "networkpolicies"} <= plurals
    assert len(settings.watching.label_selectors) == len(CHILD_RESOURCES)
    assert set(settings.watching.label_selectors.values()) == {CHILD_SELECTOR}
    assert CHILD_SELECTOR == "app.kubernetes.io/managed-by=sdxl-operator"
