"""The one RBAC declaration: complete for what the handlers call, split into framework and application."""

from __future__ import annotations

from sdxl_operator.manifests import permissions


def _verbs(rules: list[dict[str, object]], group: str, resource: str) -> set[str]:
    found: set[str] = set()
    for rule in rules:
        if group in rule["apiGroups"] and resource in rule["resources"]:  # type: ignore[operator]
            found |= set(rule["verbs"])  # type: ignore[arg-type]
    return found


def test_application_covers_what_the_finetune_controller_calls() -> None:
    rules = permissions.rules(permissions.APPLICATION)
    assert {"list", "watch", "patch"} <= _verbs(rules, "sdxl.io", "sdxlfinetunes")
    assert "patch" in _verbs(rules, "sdxl.io", "sdxlfinetunes/status")
    assert "create" in _verbs(rules, "", "configmaps")
    assert {"create", "get"} <= _verbs(rules, "batch", "jobs")
    assert "list" in _verbs(rules, "", "pods")
    assert "get" in _verbs(rules, "", "pods/log")
    # Children are collected by ownerReferences: the operator never deletes Jobs or ConfigMaps.
    assert "delete" not in _verbs(rules, "batch", "jobs") | _verbs(rules, "", "configmaps")


def test_framework_covers_kopf() -> None:
    rules = permissions.rules(permissions.FRAMEWORK)
    assert {"list", "watch"} <= _verbs(rules, "apiextensions.k8s.io", "customresourcedefinitions")
    assert "create" in _verbs(rules, "", "events")
    assert "patch" in _verbs(rules, "kopf.dev", "clusterkopfpeerings")


def test_standalone_drops_peering_and_namespaced_install_splits_cluster_scoped_rules() -> None:
    standalone = permissions.cluster_role_rules(clusterwide=True, peering=False)
    assert not _verbs(standalone, "kopf.dev", "clusterkopfpeerings")
    cluster_only = permissions.cluster_role_rules(clusterwide=False)
    assert _verbs(cluster_only, "apiextensions.k8s.io", "customresourcedefinitions")
    assert not _verbs(cluster_only, "batch", "jobs")
    namespaced = permissions.namespace_role_rules()
    assert _verbs(namespaced, "batch", "jobs") and not _verbs(namespaced, "", "namespaces")
