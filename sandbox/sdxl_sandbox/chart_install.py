"""Install the Helm chart into the real control plane, as ``helm install`` would, minus the operator pod.

``helm template`` renders the chart (default cluster-wide mode, with the CRDs); every object is created
through the API server (so its admission checks them), except the operator's own Deployment: the
sandbox runs the operator as a local process instead (or several, as the Deployment's replicas), with
that Deployment's arguments and environment, authenticated as the chart's ServiceAccount. So the
chart's RBAC is what the operator gets, and a permission the chart forgot fails like it would in a
cluster. The CRDs are established before the rest is created: the chart's Kopf peering object is
one of their resources.
"""

from __future__ import annotations

import asyncio
import dataclasses
import subprocess
from collections.abc import Sequence
from typing import Any

import yaml

from sdxl_sandbox.api_client import ApiError, KubeClient
from sdxl_sandbox.layer_tools import REPO_ROOT, layer_tool

CHART = REPO_ROOT / "charts" / "sdxl-operator"
RELEASE = "sdxl-operator"
RELEASE_NAMESPACE = "sdxl-system"
# Kinds the sandbox does not create: the operator runs locally; no Prometheus operator is installed.
NOT_INSTALLED = ("Deployment", "ServiceMonitor")
CLUSTER_SCOPED = ("CustomResourceDefinition", "ClusterRole", "ClusterRoleBinding", "Namespace", "ClusterKopfPeering")
ESTABLISH_TIMEOUT_SECONDS = 60.0
BIND_TIMEOUT_SECONDS = 60.0


@dataclasses.dataclass(frozen=True)
class InstalledOperator:
    """How to run the operator the chart describes."""

    namespace: str
    service_account: str
    args: list[str]
    env: dict[str, str]


def render_chart(values: Sequence[str] = (), *, namespace: str = RELEASE_NAMESPACE) -> list[dict[str, Any]]:
    """The chart's objects as ``helm template --include-crds`` renders them, with ``--set`` ``values``."""
    argv = [str(layer_tool("helm")), "template", RELEASE, str(CHART), "--namespace", namespace, "--include-crds"]
    for value in values:
        argv += ["--set", value]
    done = subprocess.run(argv, check=True, capture_output=True, text=True)
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


def _operator_deployment(objects: list[dict[str, Any]]) -> dict[str, Any]:
    for obj in objects:
        labels = obj["metadata"].get("labels") or {}
        if obj["kind"] == "Deployment" and labels.get("app.kubernetes.io/component") == "operator":
            return obj
    raise ValueError("the chart rendered no operator Deployment")


async def install_chart(client: KubeClient, values: Sequence[str] = (), *,
                        namespace: str = RELEASE_NAMESPACE) -> InstalledOperator:
    """Create the chart's objects (CRDs first, then RBAC and ServiceAccounts); wait for the CRDs."""
    objects = await asyncio.to_thread(render_chart, values, namespace=namespace)
    await ensure_namespace(client, namespace)
    crds = [o for o in objects if o["kind"] == "CustomResourceDefinition"]
    for crd in crds:
        await _create_unless_exists(client, crd)
    for crd in crds:
        await _wait_established(client, crd["metadata"]["name"])
    for obj in objects:
        if obj["kind"] in NOT_INSTALLED or obj["kind"] == "CustomResourceDefinition":
            continue
        if obj["kind"] not in CLUSTER_SCOPED:
            obj["metadata"].setdefault("namespace", namespace)
        await _create_unless_exists(client, obj)
    pod = _operator_deployment(objects)["spec"]["template"]["spec"]
    container = pod["containers"][0]
    env = {item["name"]: str(item["value"]) for item in container.get("env") or [] if "value" in item}
    return InstalledOperator(namespace=namespace, service_account=pod["serviceAccountName"],
                             args=[str(a) for a in container.get("args") or []], env=env)


async def _create_unless_exists(client: KubeClient, obj: dict[str, Any]) -> None:
    try:
        await client.create(obj)
    except ApiError as exc:
        if exc.status != 409:
            raise


async def ensure_namespace(client: KubeClient, name: str) -> None:
    """Create namespace ``name`` unless it exists."""
    await _create_unless_exists(client, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})


async def ensure_claim(client: KubeClient, namespace: str, claim: str, *, with_volume: bool = True) -> None:
    """A bound PersistentVolumeClaim ``claim`` in ``namespace``, as a cluster admin would provide one.

    ``with_volume``: a volume pre-bound to the claim (the sandbox's kubelet maps every claim to the folder
    ``<workdir>/pvcs/<claim>``, whatever the volume says), so the scheduler finds it bound. The
    emulator has no scheduler and no volume binding: the claim alone is enough there.
    """
    volume = f"{claim}-{namespace}"
    size = {"storage": "100Gi"}
    if not with_volume:
        await _create_unless_exists(client, {
            "apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": claim, "namespace": namespace},
            "spec": {"accessModes": ["ReadWriteMany"], "resources": {"requests": size}}})
        return
    await _create_unless_exists(client, {
        "apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": volume},
        "spec": {"capacity": size, "accessModes": ["ReadWriteMany"], "storageClassName": "",
                 "persistentVolumeReclaimPolicy": "Retain", "hostPath": {"path": f"/sandbox/{volume}"},
                 "claimRef": {"namespace": namespace, "name": claim}}})
    await _create_unless_exists(client, {
        "apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": claim, "namespace": namespace},
        "spec": {"accessModes": ["ReadWriteMany"], "storageClassName": "", "volumeName": volume,
                 "resources": {"requests": size}}})
    # Wait for the volume controller to bind it: a pod created against an unbound claim is turned away
    # by the scheduler and retried only after its back-off (seconds).
    deadline = asyncio.get_running_loop().time() + BIND_TIMEOUT_SECONDS
    while True:
        found = await client.get("v1", "persistentvolumeclaims", namespace, claim)
        if ((found or {}).get("status") or {}).get("phase") == "Bound":
            return
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"claim {namespace}/{claim} not Bound after {BIND_TIMEOUT_SECONDS:.0f}s")
        await asyncio.sleep(0.1)


async def _wait_established(client: KubeClient, name: str) -> None:
    deadline = asyncio.get_running_loop().time() + ESTABLISH_TIMEOUT_SECONDS
    while True:
        crd = await client.request("GET", f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}")
        conditions = {c["type"]: c["status"] for c in (crd.get("status") or {}).get("conditions") or []}
        if conditions.get("Established") == "True":
            return
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"CRD {name} not Established after {ESTABLISH_TIMEOUT_SECONDS:.0f}s: {conditions}")
        await asyncio.sleep(0.2)


def installed_args(args: Sequence[str]) -> list[str]:
    """The operator's arguments from the chart, less the liveness and metrics endpoints (fixed ports on
    every interface, which several operators on one machine would share)."""
    return [a for a in args if not a.startswith(("--liveness", "--metrics-port"))]

