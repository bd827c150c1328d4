"""The ``<ft>-train`` Job that runs ``sdxl-workload train --spec /etc/sdxl/spec.json``.

Choices worth knowing:

* GPUs are an extended resource: ``nvidia.com/gpu`` goes into limits and requests alike, and is
  left out when the spec asks for 0 (CPU training, e.g. the embedded tiny model).
* Memory request = limit (an OOM kill then says "OutOfMemory", not a noisy-neighbour eviction);
  CPU has a request only, so training is not throttled.
* Node selector: the operator's defaults, overridden key by key by the spec's. Tolerations: the
  operator's, then the spec's (duplicates dropped).
* ``podFailurePolicy``: the workload's permanent-failure exit code (invalid input, a compile error,
  out of memory: ``sdxl_contract.exit_codes``) fails the Job at once instead of retrying; pods
  killed by a disruption (spot reclaim, node drain) do not count against ``backoffLimit``.
* The result goes to ``/dev/termination-log`` (also given as ``SDXL_TERMINATION_LOG``);
  ``FallbackToLogsOnError`` gives a crash that wrote nothing a log tail instead.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sdxl_contract.finetune_spec import FineTuneSpec
from sdxl_contract.spec_building import to_camel_dict
from sdxl_contract.workload_protocol import SPEC_PATH
from sdxl_operator.core.accelerators import NVIDIA, device_resources, merged_tolerations
from sdxl_operator.core.labels import finetune_labels
from sdxl_operator.core.naming import finetune_configmap_name, finetune_job_name
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

CONTAINER = "trainer"
# The extended resource of the GPUs a training pod asks for: the nvidia accelerator's device.
(GPU_RESOURCE,) = device_resources(NVIDIA)


def training_command(max_images: int) -> tuple[list[str], list[str]]:
    """(command, args) of the trainer container.

    ``--resume latest`` on every attempt: a pod replaced after a spot reclaim or a crash continues
    from the newest checkpoint under the output instead of step 0 (on a first run there is none,
    and training starts fresh). ``--max-instance-images``: the administrator's limit on photos, which
    only the trainer can count (the folder is read in the pod).
    """
    return ["sdxl-workload"], ["train", "--spec", SPEC_PATH, "--resume", "latest",
                               "--max-instance-images", str(max_images)]


def build_training_job(owner: Mapping[str, Any], spec: FineTuneSpec, settings: OperatorSettings) -> dict[str, Any]:
    """The Job manifest for the SDXLFineTune ``owner`` with its resolved spec (output filled in). Pure."""
    name = owner["metadata"]["name"]
    labels = finetune_labels(name)
    resources_spec = spec.resources
    requests: dict[str, str] = {"cpu": resources_spec.cpu, "memory": resources_spec.memory}
    limits: dict[str, str] = {"memory": resources_spec.memory}
    if resources_spec.gpus > 0:
        requests[GPU_RESOURCE] = str(resources_spec.gpus)
        limits[GPU_RESOURCE] = str(resources_spec.gpus)

    # The quality report's models may live on a claim too (a cluster without the hub).
    inputs = [spec.base_model, spec.vae, spec.instance_images, spec.prior_preservation.class_images,
              spec.quality.clip_model, spec.quality.dino_model]
    pvc_volumes, pvc_mounts = volumes.pvc_volumes(inputs, [spec.output])

    command, args = training_command(settings.max_images)
    pod_volumes, mounts = workload_volumes(finetune_configmap_name(name), pvc_volumes, pvc_mounts)
    container = workload_container(
        name=CONTAINER, image=settings.image_train, command=command, args=args,
        resources={"requests": requests, "limits": limits}, mounts=mounts, settings=settings, hf_token=True,
    )
    scheduling = to_camel_dict(spec.scheduling, keep_unset=False)
    pod_spec = workload_pod_spec(
        container, pod_volumes, settings, run_once=True,
        node_selector={**settings.train_node_selector, **resources_spec.node_selector},
        tolerations=merged_tolerations(settings.train_tolerations, resources_spec.tolerations),
        scheduling=scheduling, labels=labels,
    )

    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": child_metadata(owner, finetune_job_name(name), labels),
        "spec": {
            "backoffLimit": settings.train_backoff_limit,
            "activeDeadlineSeconds": settings.train_deadline_seconds,
            "podFailurePolicy": pod_failure_policy(CONTAINER),
            # The result is in the custom resource's status long before this (settings.py).
            "ttlSecondsAfterFinished": settings.finished_job_ttl_seconds,
            # Karpenter leaves a running training pod's node alone: a consolidation would lose the
            # steps since the last checkpoint.
            "template": {"metadata": pod_template_metadata(labels, {}, scheduling, do_not_disrupt=True),
                         "spec": pod_spec},
        },
    }
