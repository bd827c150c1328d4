"""The inference Deployment ``<dep>`` running ``sdxl-workload serve`` on a compiled (or prepared) model.

* **Zero-downtime changes**: RollingUpdate with ``maxUnavailable: 0, maxSurge: 1``, so old pods serve
  until a new one is ready. The pod template carries the compile key and artifact as annotations: a new
  artifact changes the template, which is what makes the Deployment roll (and tells which model a pod
  runs). The controller builds this Deployment for the artifact that is *live* until a new compile
  succeeds, so a recompile never touches serving pods early.
* **Probes**: the server answers ``/healthz`` at once and ``/readyz`` only once the weights are loaded.
  A startup probe on ``/readyz`` gives the load its time (a Neuron model is several GB: 30 minutes;
  GPU/CPU: 15), liveness (``/healthz``) starts after it; readiness (``/readyz``) gates traffic.
* **Resources**: the accelerator's device (``aws.amazon.com/neuron: 1`` / ``nvidia.com/gpu: 1``),
  CPU and memory from ``spec.resources`` or per-accelerator defaults (small for ``builtin:`` models);
  memory request = limit. ``/dev/shm`` is a memory emptyDir.
* ``spec.replicas`` is left out when ``spec.autoscaling`` is set: the HorizontalPodAutoscaler owns it.
* **The spec** comes from the ``<dep>-server-spec`` ConfigMap at ``/etc/sdxl/spec.json``
  (``sdxl-workload serve --spec``, :mod:`server_spec`); the pod template carries its hash
  (``sdxl.io/spec-hash``), so a change the server reads rolls the pods, and a change of the scale or of
  a set's members does not.
* ``metadata.annotations[sdxl.io/template-hash]`` hashes the built spec, so the controller patches only
  when what it wants changed, never fighting the API server's defaulting.
* A set of fine-tunes (resolved spec with ``adapters``, :mod:`adapter_set_spec`): the pods serve the
  base model with ``--adapters`` read from the ``<dep>-adapters`` ConfigMap mounted as a folder
  (:mod:`adapters_configmap`), whose content is not in the template; they mount the artifact store's
  claim, where the fine-tunes' LoRAs are. ``--compile-unet`` on nvidia: adapters are hot-swapped
  into one compiled UNet.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from sdxl_contract.uris import is_builtin
from sdxl_contract.workload_protocol import SPEC_PATH
from sdxl_operator.core.accelerators import NEURON, device_resources, image_for, server_placement
from sdxl_operator.core.labels import SERVER, compile_annotations, deployment_labels
from sdxl_operator.core.naming import deployment_name, server_configmap_name
from sdxl_operator.core.settings import OperatorSettings
from sdxl_operator.manifests import volumes
from sdxl_operator.manifests.adapters_configmap import ADAPTERS_PATH, adapters_mount, adapters_volume
from sdxl_operator.manifests.ownership import child_metadata
from sdxl_operator.manifests.server_spec import SPEC_HASH, server_spec_hash
from sdxl_operator.manifests.workload_pod import (
    pod_template_metadata,
    workload_container,
    workload_pod_spec,
    workload_volumes,
)

CONTAINER = "server"
PORT = 8080
PORT_NAME = "http"
AUTH_DIR = "/etc/sdxl/auth"
AUTH_VOLUME = "api-key"
TEMPLATE_HASH = "sdxl.io/template-hash"
PROBE_PERIOD_SECONDS = 10
# Startup budget = failureThreshold x period: long enough to fetch and load a multi-GB model.
STARTUP_FAILURES = {NEURON: 180, "nvidia": 90, "cpu": 90}
DEFAULT_RESOURCES = {
    NEURON: {"cpu": "4", "memory": "24Gi"},
    "nvidia": {"cpu": "4", "memory": "32Gi"},
    "cpu": {"cpu": "4", "memory": "16Gi"},
}
BUILTIN_RESOURCES = {"cpu": "1", "memory": "2Gi"}
# Kubernetes waits this long past the startup budget before reporting a stuck rollout.
PROGRESS_MARGIN_SECONDS = 600
REVISION_HISTORY = 3
# On SIGTERM the server drains: it finishes accepted requests, each bounded by the request timeout.
# Kubernetes must wait that long (plus a margin for shutdown) before it kills the pod.
DRAIN_MARGIN_SECONDS = 15


def serve_command(resolved_spec: Mapping[str, Any], artifact: str) -> tuple[list[str], list[str]]:
    """(command, args) of the server container for the compiled/prepared model at ``artifact``.

    What to serve and how is the mounted server spec (:mod:`server_spec`); the flags carry only what a
    spec does not hold: the folder of the compiled model, the port, the files the key and the adapters
    are mounted as."""
    args = ["serve", "--spec", SPEC_PATH, "--model", artifact, "--port", str(PORT)]
    auth = resolved_spec.get("auth")
    if auth:
        args += ["--api-key-file", f"{AUTH_DIR}/{auth['apiKeySecretKey']}"]
    if resolved_spec.get("adapters"):
        args += ["--adapters", ADAPTERS_PATH]
        if resolved_spec["accelerator"] == "nvidia":
            args.append("--compile-unet")
    return ["sdxl-workload"], args


def server_resources(resolved_spec: Mapping[str, Any]) -> dict[str, Any]:
    accelerator = str(resolved_spec["accelerator"])
    defaults = BUILTIN_RESOURCES if is_builtin(str(resolved_spec["baseModel"])) else DEFAULT_RESOURCES[accelerator]
    wanted: Mapping[str, Any] = resolved_spec.get("resources") or {}
    cpu, memory = str(wanted.get("cpu") or defaults["cpu"]), str(wanted.get("memory") or defaults["memory"])
    device = device_resources(accelerator)
    return {"requests": {"cpu": cpu, "memory": memory, **device}, "limits": {"memory": memory, **device}}


def _probe(path: str, *, failures: int, period: int = PROBE_PERIOD_SECONDS) -> dict[str, Any]:
    return {"httpGet": {"path": path, "port": PORT_NAME}, "periodSeconds": period, "timeoutSeconds": 5,
            "failureThreshold": failures}


def template_hash(spec: Mapping[str, Any]) -> str:
    """A short digest of a Deployment spec as built (sorted-key JSON)."""
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode("utf-8")).hexdigest()[:16]


def build_inference_deployment(
    owner: Mapping[str, Any], resolved_spec: Mapping[str, Any], *, key: str, artifact: str,
    settings: OperatorSettings,
) -> dict[str, Any]:
    """The Deployment serving ``artifact`` (compile ``key``) for the SDXLDeployment ``owner``. Pure."""
    name = owner["metadata"]["name"]
    labels = deployment_labels(name, SERVER)
    accelerator = str(resolved_spec["accelerator"])
    adapters = resolved_spec.get("adapters")
    # A set's LoRAs come and go without a new template: mount the store's claim they are written to.
    inputs = [artifact, settings.artifact_store] if adapters else [artifact]
    pvc_volumes, pvc_mounts = volumes.pvc_volumes(inputs, [])
    command, args = serve_command(resolved_spec, artifact)
    pod_volumes, mounts = workload_volumes(server_configmap_name(name), pvc_volumes, pvc_mounts)
    if adapters:
        mounts.append(adapters_mount())
        pod_volumes.append(adapters_volume(name))
    auth = resolved_spec.get("auth")
    if auth:
        mounts.append({"name": AUTH_VOLUME, "mountPath": AUTH_DIR, "readOnly": True})
        pod_volumes.append({"name": AUTH_VOLUME, "secret": {
            "secretName": auth["apiKeySecret"], "defaultMode": 0o440,
            "items": [{"key": auth["apiKeySecretKey"], "path": auth["apiKeySecretKey"]}],
        }})
    startup_failures = STARTUP_FAILURES[accelerator]
    container = workload_container(
        name=CONTAINER, image=image_for(accelerator, settings), command=command, args=args,
        resources=server_resources(resolved_spec), mounts=mounts, settings=settings, hf_token=False,
    )
    container.update({
        "ports": [{"name": PORT_NAME, "containerPort": PORT, "protocol": "TCP"}],
        "startupProbe": _probe("/readyz", failures=startup_failures),
        "readinessProbe": _probe("/readyz", failures=3, period=5),
        "livenessProbe": _probe("/healthz", failures=6),
    })
    node_selector, tolerations = server_placement(
        accelerator, resolved_spec.get("neuron"), resolved_spec.get("resources") or {}, settings
    )
    scheduling = resolved_spec.get("scheduling")
    pod_spec = workload_pod_spec(container, pod_volumes, settings, run_once=False,
                                 node_selector=node_selector, tolerations=tolerations,
                                 scheduling=scheduling, labels=labels)
    pod_spec["terminationGracePeriodSeconds"] = (
        int(resolved_spec["server"]["requestTimeoutSeconds"]) + DRAIN_MARGIN_SECONDS
    )

    spec: dict[str, Any] = {}
    if not resolved_spec.get("autoscaling"):
        spec["replicas"] = int(resolved_spec["replicas"])
    spec.update({
        "selector": {"matchLabels": dict(labels)},
        "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
        "revisionHistoryLimit": REVISION_HISTORY,
        "progressDeadlineSeconds": startup_failures * PROBE_PERIOD_SECONDS + PROGRESS_MARGIN_SECONDS,
        # Server pods may move: the Deployment replaces them before old ones stop, and more than one
        # replica has a PodDisruptionBudget (inference_disruption_budget).
        "template": {
            "metadata": pod_template_metadata(
                labels, {**compile_annotations(key, artifact), SPEC_HASH: server_spec_hash(resolved_spec)},
                scheduling, do_not_disrupt=False),
            "spec": pod_spec,
        },
    })
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": child_metadata(owner, deployment_name(name), labels, {TEMPLATE_HASH: template_hash(spec)}),
        "spec": spec,
    }

