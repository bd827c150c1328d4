"""The chart grants the operator exactly what sdxl_operator.manifests.permissions declares: no wildcard, nothing
missing, nothing extra, framework and application rules labelled, per-namespace Roles in namespaced mode, and
the peering rule of the mode (the replicas run Kopf with --peering)."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any

import pytest

from sdxl_operator.manifests import permissions

RELEASE_NAMESPACE = "sdxl-system"
RBAC_KINDS = ("ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding")
Triple = tuple[str, str, str]


def _triples(rules: Iterable[dict[str, Any]]) -> set[Triple]:
    """(apiGroup, resource, verb) for every combination a list of rules grants."""
    return {
        (group, resource, verb)
        for rule in rules
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }


def _count(rules: Iterable[dict[str, Any]]) -> int:
    return sum(len(r["apiGroups"]) * len(r["resources"]) * len(r["verbs"]) for r in rules)


def _assert_grants(rules: list[dict[str, Any]], declared: list[dict[str, Any]], what: str) -> None:
    granted, expected = _triples(rules), _triples(declared)
    missing = sorted(expected - granted)
    extra = sorted(granted - expected)
    assert not missing and not extra, f"{what}: missing {missing}, not declared {extra}"
    assert _count(rules) == len(granted), f"{what}: a permission is granted twice"


def _operator_subject(result: Any) -> dict[str, str]:
    account = next(sa for sa in result.of_kind("ServiceAccount")
                   if sa["metadata"]["labels"]["app.kubernetes.io/component"] == "operator")
    return {"kind": "ServiceAccount", "name": account["metadata"]["name"], "namespace": RELEASE_NAMESPACE}


@pytest.mark.parametrize("values", [{}, {"watchNamespaces": ["team-a", "team-b"]}], ids=["cluster-wide", "namespaced"])
def test_no_wildcards(render: Callable[..., Any], values: dict[str, Any]) -> None:
    result = render(values)
    for role in result.of_kind("ClusterRole") + result.of_kind("Role"):
        for rule in role["rules"]:
            for field in ("apiGroups", "resources", "verbs", "resourceNames", "nonResourceURLs"):
                assert not any("*" in item for item in rule.get(field, [])), f"{role['kind']}: {rule}"


def _peering(*, cluster_scoped: bool) -> set[Triple]:
    chosen = [p for p in permissions.FRAMEWORK if p.only_with_peering and p.cluster_scoped == cluster_scoped]
    assert chosen, "the declaration lost its peering rules; this test no longer checks anything"
    return _triples(permissions.rules(chosen))


def test_the_replicas_peer_and_get_only_the_peering_of_their_mode(render: Callable[..., Any]) -> None:
    """Cluster-wide: the ClusterKopfPeering; namespaced: the KopfPeering of each namespace, nothing cluster-wide."""
    cluster_wide = render()
    args = cluster_wide.one("Deployment")["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--standalone" not in args and "--peering=sdxl-sdxl-operator" in args
    granted = _triples(cluster_wide.one("ClusterRole")["rules"])
    assert _peering(cluster_scoped=True) <= granted and not _peering(cluster_scoped=False) & granted

    namespaced = render({"watchNamespaces": ["team-a", "team-b"]})
    assert not (_peering(cluster_scoped=True) | _peering(cluster_scoped=False)) & _triples(
        namespaced.one("ClusterRole")["rules"])
    for role in namespaced.of_kind("Role"):
        assert _peering(cluster_scoped=False) <= _triples(role["rules"])


def test_cluster_wide_mode_grants_exactly_the_declaration(render: Callable[..., Any]) -> None:
    result = render({"watchNamespaces": []})
    assert result.of_kind("Role") == [] and result.of_kind("RoleBinding") == []
    role = result.one("ClusterRole")
    _assert_grants(role["rules"], permissions.cluster_role_rules(clusterwide=True, peering=True), "ClusterRole")
    binding = result.one("ClusterRoleBinding")
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                                  "name": role["metadata"]["name"]}
    assert binding["subjects"] == [_operator_subject(result)]


def test_namespaced_mode_grants_a_role_per_namespace_and_only_cluster_scoped_rules_cluster_wide(
    render: Callable[..., Any],
) -> None:
    namespaces = ["team-a", "team-b"]
    result = render({"watchNamespaces": namespaces})
    cluster_role = result.one("ClusterRole")
    _assert_grants(cluster_role["rules"], permissions.cluster_role_rules(clusterwide=False, peering=True),
                   "ClusterRole")
    subject = _operator_subject(result)
    assert result.one("ClusterRoleBinding")["subjects"] == [subject]

    roles = {r["metadata"]["namespace"]: r for r in result.of_kind("Role")}
    bindings = {b["metadata"]["namespace"]: b for b in result.of_kind("RoleBinding")}
    assert sorted(roles) == sorted(bindings) == namespaces
    for namespace in namespaces:
        _assert_grants(roles[namespace]["rules"], permissions.namespace_role_rules(peering=True),
                       f"Role in {namespace}")
        assert bindings[namespace]["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                                                  "name": roles[namespace]["metadata"]["name"]}
        assert bindings[namespace]["subjects"] == [subject]


def test_namespaced_grants_together_equal_the_cluster_wide_grants(render: Callable[..., Any]) -> None:
    """Nothing the operator needs is lost by restricting it to namespaces (but the peering of the other mode)."""
    namespaced = render({"watchNamespaces": ["team-a"]})
    combined = namespaced.one("ClusterRole")["rules"] + namespaced.one("Role")["rules"]
    assert _triples(combined) - _peering(cluster_scoped=False) == \
        _triples(render().one("ClusterRole")["rules"]) - _peering(cluster_scoped=True)


def test_rules_are_labelled_framework_or_application_as_declared(render: Callable[..., Any]) -> None:
    """Each rendered rule carries a `# framework:` or `# application:` comment matching the declaration."""
    text = render().stdout
    role_text = next(doc for doc in text.split("\n---") if re.search(r"^kind: ClusterRole$", doc, re.M))
    labelled: dict[str, set[Triple]] = {"framework": set(), "application": set()}
    for match in re.finditer(
        r"# (framework|application): .*\n\s*- apiGroups: (\[.*\])\n\s*resources: (\[.*\])\n\s*verbs: (\[.*\])",
        role_text,
    ):
        group_name, groups, resources, verbs = match.groups()
        labelled[group_name] |= _triples([{"apiGroups": _flow_list(groups), "resources": _flow_list(resources),
                                           "verbs": _flow_list(verbs)}])
    declared_framework = [p for p in permissions.FRAMEWORK if not p.only_with_peering or p.cluster_scoped]
    assert labelled["framework"] == _triples(permissions.rules(declared_framework))
    assert labelled["application"] == _triples(permissions.rules(permissions.APPLICATION))


def _flow_list(flow: str) -> list[str]:
    """A YAML flow list of quoted strings, e.g. ["", "apps"]."""
    return re.findall(r'"([^"]*)"', flow)


def test_rbac_can_be_left_to_the_cluster_admin(render: Callable[..., Any]) -> None:
    result = render({"operator": {"rbacCreate": False}})
    assert [m for m in result.manifests if m["kind"] in RBAC_KINDS] == []


def test_comparison_notices_a_missing_verb() -> None:
    """The checks above fail when the chart and the declaration drift apart."""
    declared = permissions.namespace_role_rules()
    trimmed = [dict(rule, verbs=rule["verbs"][:-1]) if i == 0 else rule for i, rule in enumerate(declared)]
    with pytest.raises(AssertionError, match="missing"):
        _assert_grants(trimmed, declared, "Role")
