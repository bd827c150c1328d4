"""The RBAC declaration covers every API call of the SDXLDeployment controller (the chart renders it)."""

from __future__ import annotations

from sdxl_operator.handlers.kube_api import _KINDS
from sdxl_operator.manifests import permissions

# (group, resource, verbs) the deployment controller uses: kube_api calls made by deployment_handlers.
USED = [
    ("sdxl.io", "sdxldeployments", {"get", "list", "watch", "patch"}),
    ("sdxl.io", "sdxldeployments/status", {"patch"}),
    ("sdxl.io", "sdxlfinetunes", {"get", "list"}),  # read_custom: waiting on the fine-tune; list: a set's
    ("", "configmaps", {"get", "create", "patch"}),  # the compile spec; a set's adapters ConfigMap
    ("batch", "jobs", {"list", "create"}),  # list_jobs by compile key, create
    ("", "pods", {"list"}),  # compile and server pods
    ("apps", "deployments", {"get", "create", "patch"}),
    ("", "services", {"create"}),
    ("autoscaling", "horizontalpodautoscalers", {"get", "create", "patch", "delete"}),
    ("", "events", {"create"}),
]


def _verbs(group: str, resource: str) -> set[str]:
    found: set[str] = set()
    for rule in permissions.rules(permissions.all_permissions()):
        if group in rule["apiGroups"] and resource in rule["resources"]:
            found |= set(rule["verbs"])
    return found


def test_every_call_of_the_deployment_controller_is_granted() -> None:
    for group, resource, verbs in USED:
        assert verbs <= _verbs(group, resource), (group, resource, verbs - _verbs(group, resource))


def test_children_other_than_the_autoscaler_are_never_deleted() -> None:
    for group, resource in [("batch", "jobs"), ("", "configmaps"), ("apps", "deployments"), ("", "services")]:
        assert "delete" not in _verbs(group, resource)


def test_every_child_kind_the_client_calls_is_named_in_the_grants() -> None:
    """The client's REST path of each kind (api/v1/<plural>, apis/<group>/<version>/<plural>) names a
    group and resource that the chart's RBAC rules grant at least one verb on."""
    for kind, (group_version, plural) in _KINDS.items():
        group = "" if group_version == "api/v1" else group_version.split("/")[1]
        assert _verbs(group, plural), (kind, group, plural)
