"""The nodes of the real control plane: Node objects whose pods the sandbox's kubelet runs locally.

Three nodes, shaped like the pools the operator places work on:

* ``sim-gpu`` — a g5.2xlarge-like GPU node: ``nvidia.com/gpu: 1``, tainted ``nvidia.com/gpu:NoSchedule``
  as EKS GPU node groups often are;
* ``sim-inf2`` — an inf2.8xlarge-like node: ``aws.amazon.com/neuron: 1``, the instance-type label the
  compile pool selects, and the usual ``aws.amazon.com/neuron:NoSchedule`` taint;
* ``sim-cpu`` — a plain CPU node, no taints.

The scheduler sees their capacity, labels and taints and binds pods to them; which one it chose is
the test of placement. Every node points its kubelet endpoint at the sandbox's log server, so the API
server's ``pods/log`` proxy (``kubectl logs``) reaches the local processes' output. The nodes send no
heartbeats; the control plane runs without the node-lifecycle controller (see ``control_plane``).
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Mapping
from typing import Any

from sdxl_contract import accelerators
from sdxl_contract.accelerators import AcceleratorProfile
from sdxl_sandbox.api_client import ApiError, KubeClient
from sdxl_sandbox.container_launch import LOOPBACK

BASE_CAPACITY = {"cpu": "32", "memory": "256Gi", "pods": "110", "ephemeral-storage": "1Ti"}


@dataclasses.dataclass(frozen=True)
class SimulatedNode:
    """One Node: its name, labels, taints and the extended resources it offers."""

    name: str
    instance_type: str
    extended: Mapping[str, str] = dataclasses.field(default_factory=dict)
    taints: tuple[Mapping[str, str], ...] = ()

    def manifest(self) -> dict[str, Any]:
        labels = {
            "kubernetes.io/hostname": self.name, "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64",
            "node.kubernetes.io/instance-type": self.instance_type,
            "sdxl.io/simulated-node": "true",
        }
        return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": self.name, "labels": labels},
                "spec": {"taints": [dict(t) for t in self.taints]}}

    def status(self, kubelet_port: int) -> dict[str, Any]:
        capacity = {**BASE_CAPACITY, **self.extended}
        now = datetime.datetime.now(tz=datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        return {
            "capacity": capacity, "allocatable": capacity,
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                            "message": "the sandbox's kubelet runs this node's pods as local processes",
                            "lastHeartbeatTime": now, "lastTransitionTime": now}],
            "addresses": [{"type": "InternalIP", "address": LOOPBACK}, {"type": "Hostname", "address": self.name}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": kubelet_port}},
            "nodeInfo": {"architecture": "amd64", "operatingSystem": "linux", "kubeletVersion": "sandbox",
                         "kubeProxyVersion": "", "containerRuntimeVersion": "local-process://1",
                         "osImage": "sdxl-operator sandbox", "kernelVersion": "", "machineID": "",
                         "systemUUID": "", "bootID": ""},
        }


def _device_node(name: str, instance_type: str, profile: AcceleratorProfile) -> SimulatedNode:
    """A node of ``profile``'s pool: one device, and the taint its pods tolerate."""
    assert profile.device_resource is not None and profile.node_taint_key is not None
    return SimulatedNode(name, instance_type, {profile.device_resource: "1"},
                         ({"key": profile.node_taint_key, "value": "present", "effect": "NoSchedule"},))


GPU_NODE = _device_node("sim-gpu", "g5.2xlarge", accelerators.NVIDIA)
INF2_NODE = _device_node("sim-inf2", "inf2.8xlarge", accelerators.NEURON)
CPU_NODE = SimulatedNode("sim-cpu", "m6i.4xlarge")
DEFAULT_NODES = (GPU_NODE, INF2_NODE, CPU_NODE)


async def register_node(client: KubeClient, node: SimulatedNode, kubelet_port: int) -> None:
    """Create (or refresh) ``node`` with its status; its taints are exactly ``node.taints``.

    The API server's admission adds ``node.kubernetes.io/not-ready`` to a new Node; the node-lifecycle
    controller would lift it once the node reports Ready. That controller does not run here, so the
    taints are written back as declared, which is what it would have left.
    """
    manifest = node.manifest()
    try:
        await client.create(manifest)
    except ApiError as exc:
        if exc.status != 409:
            raise
    await client.patch(manifest, {"metadata": {"labels": manifest["metadata"]["labels"]},
                                  "spec": {"taints": manifest["spec"]["taints"]}})
    await client.patch_status(manifest, node.status(kubelet_port))


async def set_schedulable(client: KubeClient, node: SimulatedNode, schedulable: bool) -> None:
    """Cordon (``kubectl cordon``) or uncordon ``node``."""
    await client.patch(node.manifest(), {"spec": {"unschedulable": not schedulable}})
