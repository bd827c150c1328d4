"""The server pods' PodDisruptionBudget: whole manifest, valid for Kubernetes, and when there is one."""

from __future__ import annotations

from typing import Any

import kubernetes_validate
import pytest

from sdxl_operator.manifests.inference_disruption_budget import (
    build_disruption_budget,
    wants_disruption_budget,
)

UID = "9a8b7c6d-5e4f-3a2b-1c0d-e9f8a7b6c5d4"
OWNER: dict[str, Any] = {"apiVersion": "sdxl.io/v1alpha1", "kind": "SDXLDeployment",
                         "metadata": {"name": "alice", "namespace": "team-a", "uid": UID}, "spec": {}}
SERVER_LABELS = {"app.kubernetes.io/managed-by": "sdxl-operator", "app.kubernetes.io/name": "sdxl-server",
                 "app.kubernetes.io/instance": "alice", "sdxl.io/deployment": "alice"}


def test_budget_whole_manifest() -> None:
    budget = build_disruption_budget(OWNER)
    assert budget == {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {
            "name": "alice", "namespace": "team-a", "labels": SERVER_LABELS,
            "ownerReferences": [{"controller": True, "blockOwnerDeletion": True, "apiVersion": "sdxl.io/v1alpha1",
                                 "kind": "SDXLDeployment", "name": "alice", "uid": UID}],
        },
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": SERVER_LABELS},
                 "unhealthyPodEvictionPolicy": "AlwaysAllow"},
    }
    kubernetes_validate.validate(budget, "1.31", strict=True)


@pytest.mark.parametrize(
    ("resolved", "wanted"),
    [
        ({"replicas": 1}, False),
        ({"replicas": 0}, False),
        ({"replicas": 2}, True),
        ({"replicas": 1, "autoscaling": {"minReplicas": 1, "maxReplicas": 4}}, True),
        ({"replicas": 3, "autoscaling": {"minReplicas": 1, "maxReplicas": 1}}, False),  # autoscaling decides
    ],
)
def test_a_budget_only_with_more_than_one_server_pod(resolved: dict[str, Any], wanted: bool) -> None:
    assert wants_disruption_budget(resolved) is wanted
