"""The compile Job ``<dep>-compile-<key8>`` and its spec ConfigMap (same name), for one compile key.

``sdxl-workload compile --spec /etc/sdxl/spec.json --store <store> --key <key> --runtime-id <image>``
(the LoRA and its digest are the resolved spec's ``lora`` and ``loraSha256``) compiles for Inferentia2 (accelerator neuron) or prepares a fused
pipeline (nvidia, cpu) into ``<store>/compiled/<key>/``; an artifact already COMPLETE there is a cache
hit that ends in seconds. Choices worth knowing:

* **One ConfigMap per compile key**, named like the Job and ``immutable``: a Job's input must not
  change under it (a retried pod would otherwise compile a newer spec into the older key's folder), and
  an SDXLDeployment whose spec changes gets a new key, hence a new Job and ConfigMap.
* **Labels** carry the compile key (``sdxl.io/compile-key``, first 63 characters; the full key is in
  the annotation of the same name), so another SDXLDeployment with the same key finds this Job and
  waits on it instead of compiling again (see ``deployment_handlers``).
* **Placement.** A Neuron compile needs no Neuron device, only ~64-128 GiB of host memory for about
  40 minutes. With ``SDXL_COMPILE_ON_NEURON=true`` it asks for one ``aws.amazon.com/neuron`` device
  (so it has an inf2 node's memory to itself and lands on a Neuron node) and tolerates the Neuron
  taint; otherwise it runs on the compile pool as is (a large CPU node group). The compile pool's
  selector and tolerations (``SDXL_COMPILE_NODE_SELECTOR/_TOLERATIONS``) apply to Neuron compiles,
  and to GPU/CPU prepares only when the pool is a CPU pool: a prepare must not take an inf2 node.
  GPU prepares run on CPU: fusing a LoRA needs no GPU.
* **Memory**, request = limit: 96Gi for a Neuron compile of SDXL, 32Gi for a GPU/CPU prepare of SDXL,
  2Gi for the embedded ``builtin:`` models (whatever the accelerator).
* **Disk**: a Neuron compile of SDXL requests 64Gi of ``ephemeral-storage`` and its ``/tmp`` emptyDir
  has the same ``sizeLimit`` (it stages the compiled model there before publishing).
* ``backoffLimit`` 1 (one retry, e.g. a lost spot node); exit code 2 (invalid input) fails at once.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sdxl_contract import accelerators
from sdxl_contract.compiled_artifacts import compiled_uri
from sdxl_contract.uris import is_builtin
from sdxl_contract.workload_protocol import SPEC_PATH
from sdxl_operator.core.accelerators import (
    NEURON,
    device_resources,
    device_toleration,
    image_for,
    merged_tolerations,
)
from sdxl_operator.core.labels import COMPILE_KEY, compile_annotations, compile_labels
from sdxl_operator.core.naming import compile_job_name
from sdxl_operator.core.settings import OperatorSettings
from sdxl_operator.manifests import volumes
from sdxl_operator.manifests.job_failure_policy import pod_failure_policy
from sdxl_operator.manifests.ownership import child_metadata
from sdxl_operator.manifests.workload_pod import (
    pod_template_metadata,
    workload_container,
    workload_pod_spec,
    workload_volumes,
)
from sdxl_operator.spec.store_tenancy import compile_store

CONTAINER = "compiler"
COMPILE_BACKOFF_LIMIT = 1
NEURON_COMPILE = {"cpu": "8", "memory": "96Gi"}
PREPARE = {"cpu": "4", "memory": "32Gi"}
BUILTIN = {"cpu": "1", "memory": "2Gi"}
# A Neuron compile of SDXL stages its ~7.6 GB of compiled components (and the compiler's work
# files) under /tmp before publishing: /tmp is capped at this and the pod asks for it as
# ephemeral storage, so it lands on a node with the disk instead of being evicted halfway.
NEURON_COMPILE_SCRATCH = "64Gi"


def compile_command(resolved_spec: Mapping[str, Any], key: str, settings: OperatorSettings, store: str
                    ) -> tuple[list[str], list[str]]:
    """(command, args) of the compile container; ``store`` holds ``compiled/<key>/``.

    Everything the spec holds (the LoRA, its digest, the base model, the shapes) is read from the mounted
    spec; the flags carry only what it does not: where the result goes, its key and the runtime."""
    args = ["compile", "--spec", SPEC_PATH, "--store", store, "--key", key,
            "--runtime-id", image_for(str(resolved_spec["accelerator"]), settings)]
    return ["sdxl-workload"], args


def build_compile_configmap(owner: Mapping[str, Any], resolved_spec: Mapping[str, Any], key: str) -> dict[str, Any]:
    """The immutable ConfigMap holding the resolved spec for the compile of ``key``. Pure."""
    name = owner["metadata"]["name"]
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": child_metadata(owner, compile_job_name(name, key), compile_labels(name, key),
                                   {COMPILE_KEY: key}),
        "immutable": True,
        "data": volumes.spec_data(resolved_spec),
    }


def compile_scratch_size(resolved_spec: Mapping[str, Any]) -> str | None:
    """The ``/tmp`` a compile needs on the node's disk, when it is more than a few files."""
    neuron = resolved_spec["accelerator"] == NEURON
    return NEURON_COMPILE_SCRATCH if neuron and not is_builtin(str(resolved_spec["baseModel"])) else None


def compile_resources(resolved_spec: Mapping[str, Any], settings: OperatorSettings) -> dict[str, Any]:
    """requests/limits of the compile container (see the module docstring)."""
    neuron = resolved_spec["accelerator"] == NEURON
    sizes = BUILTIN if is_builtin(str(resolved_spec["baseModel"])) else NEURON_COMPILE if neuron else PREPARE
    requests = {"cpu": sizes["cpu"], "memory": sizes["memory"]}
    scratch = compile_scratch_size(resolved_spec)
    if scratch:
        requests["ephemeral-storage"] = scratch
    limits = {"memory": sizes["memory"]}
    if neuron and settings.compile_on_neuron:
        requests.update(device_resources(NEURON))
        limits.update(device_resources(NEURON))
    return {"requests": requests, "limits": limits}


def build_compile_job(
    owner: Mapping[str, Any], resolved_spec: Mapping[str, Any], key: str, settings: OperatorSettings
) -> dict[str, Any]:
    """The compile Job manifest for the SDXLDeployment ``owner`` and compile ``key``. Pure."""
    name = owner["metadata"]["name"]
    job_name = compile_job_name(name, key)
    labels = compile_labels(name, key)
    accelerator = str(resolved_spec["accelerator"])
    neuron = accelerator == NEURON
    store = compile_store(settings.artifact_store, owner["metadata"]["namespace"],
                          shared=settings.shared_compile_cache)
    pvc_volumes, pvc_mounts = volumes.pvc_volumes(
        [resolved_spec.get("baseModel"), resolved_spec.get("lora")], [store]
    )
    command, args = compile_command(resolved_spec, key, settings, store)
    pod_volumes, mounts = workload_volumes(job_name, pvc_volumes, pvc_mounts,
                                           tmp_size_limit=compile_scratch_size(resolved_spec))
    container = workload_container(
        name=CONTAINER, image=image_for(accelerator, settings), command=command, args=args,
        resources=compile_resources(resolved_spec, settings), mounts=mounts, settings=settings, hf_token=True,
    )
    use_pool = neuron or not settings.compile_on_neuron
    pod_spec = workload_pod_spec(
        container, pod_volumes, settings, run_once=True,
        node_selector=settings.compile_node_selector if use_pool else {},
        tolerations=merged_tolerations(
            device_toleration(accelerators.NEURON) if neuron and settings.compile_on_neuron else [],
            settings.compile_tolerations if use_pool else [],
        ),
        scheduling=resolved_spec.get("scheduling"), labels=labels,
    )
    annotations = compile_annotations(key, compiled_uri(store, key))
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": child_metadata(owner, job_name, labels, annotations),
        "spec": {
            "backoffLimit": COMPILE_BACKOFF_LIMIT,
            "activeDeadlineSeconds": settings.compile_deadline_seconds,
            "podFailurePolicy": pod_failure_policy(CONTAINER),
            # The result is in the custom resource's status long before this (settings.py).
            "ttlSecondsAfterFinished": settings.finished_job_ttl_seconds,
            # Karpenter leaves a running compile's node alone: consolidating it away would cost the
            # 35-40 minutes compiled so far.
            "template": {
                "metadata": pod_template_metadata(labels, annotations, resolved_spec.get("scheduling"),
                                                  do_not_disrupt=True),
                "spec": pod_spec,
            },
        },
    }
