"""spec.scheduling within the administrator's limits: node affinity keys, priority classes, reserved pod keys."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from sdxl_operator.core.settings import OperatorSettings
from sdxl_operator.spec.admin_policy import deployment_policy_errors, finetune_policy_errors
from sdxl_operator.spec.placement_limits import scheduling_errors

DEFAULTS = OperatorSettings()
ALLOWING = dataclasses.replace(DEFAULTS, allowed_priority_classes=("batch-*", "sdxl-serving"))


def _node_affinity(key: str, *, preferred: bool = False, field: str = "matchExpressions") -> dict[str, Any]:
    term = {field: [{"key": key, "operator": "In", "values": ["x"]}]}
    if preferred:
        return {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
            {"weight": 10, "preference": term}]}}
    return {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [term]}}}


def _errors(scheduling: dict[str, Any], settings: OperatorSettings = ALLOWING) -> list[str]:
    return scheduling_errors(scheduling, node_selector_keys=settings.allowed_node_selector_keys,
                             priority_classes=settings.allowed_priority_classes)


@pytest.mark.parametrize(
    ("scheduling", "refused"),
    [
        ({}, False),
        ({"affinity": _node_affinity("topology.kubernetes.io/zone")}, False),
        ({"affinity": _node_affinity("karpenter.sh/capacity-type", preferred=True)}, False),
        ({"affinity": _node_affinity("node-role.kubernetes.io/control-plane")}, True),
        ({"affinity": _node_affinity("dedicated", preferred=True)}, True),
        ({"affinity": _node_affinity("metadata.name", field="matchFields")}, True),  # pinning a node by name
        # Pod (anti-)affinity says where the pod goes relative to other pods, not which nodes it may use.
        ({"affinity": {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
            {"weight": 1, "podAffinityTerm": {"topologyKey": "kubernetes.io/hostname"}}]}}}, False),
        ({"priorityClassName": "batch-low"}, False),
        ({"priorityClassName": "sdxl-serving"}, False),
        ({"priorityClassName": "system-cluster-critical"}, True),
        ({"podLabels": {"team": "portraits", "app.kubernetes.io/part-of": "shop"}}, False),
        ({"podLabels": {"app.kubernetes.io/name": "other"}}, True),
        ({"podLabels": {"app.kubernetes.io/instance": "other"}}, True),
        ({"podLabels": {"app.kubernetes.io/managed-by": "helm"}}, True),
        ({"podLabels": {"sdxl.io/finetune": "bob"}}, True),
        ({"podLabels": {"batch.kubernetes.io/job-name": "x"}}, True),
        ({"podLabels": {"pod-template-hash": "x"}}, True),
        ({"podAnnotations": {"karpenter.sh/do-not-disrupt": "false", "prometheus.io/scrape": "true"}}, False),
        ({"podAnnotations": {"sdxl.io/compiled-artifact": "s3://elsewhere"}}, True),
    ],
)
def test_scheduling_within_the_limits(scheduling: dict[str, Any], refused: bool) -> None:
    assert bool(_errors(scheduling)) is refused


def test_no_priority_class_is_allowed_by_default_and_the_refusal_says_how_to_allow_it() -> None:
    [error] = _errors({"priorityClassName": "batch-low"}, DEFAULTS)
    assert error.startswith("spec.scheduling.priorityClassName: priority class batch-low is not allowed")
    assert "(allowed: none)" in error and "placement.allowedPriorityClasses" in error


def test_a_refused_node_affinity_key_names_its_place_and_the_helm_value() -> None:
    [error] = _errors({"affinity": _node_affinity("dedicated", preferred=True)})
    assert error.startswith("spec.scheduling.affinity.nodeAffinity.preferredDuringSchedulingIgnoredDuringExecution"
                            "[0].preference.matchExpressions[0]: node key dedicated is not allowed")
    assert "placement.allowedNodeSelectorKeys" in error


def test_both_kinds_check_their_scheduling() -> None:
    scheduling = {"priorityClassName": "system-node-critical", "podLabels": {"sdxl.io/deployment": "x"}}
    finetune = {"instanceImages": "builtin:sample-subject", "instancePrompt": "p", "scheduling": scheduling}
    deployment = {"fineTune": "alice", "accelerator": "cpu", "scheduling": scheduling}
    for errors in (finetune_policy_errors(finetune, "team-a", ALLOWING),
                   deployment_policy_errors(deployment, "team-a", ALLOWING)):
        assert [e.split(":")[0] for e in errors] == ["spec.scheduling.priorityClassName",
                                                     "spec.scheduling.podLabels.sdxl.io/deployment"]
