"""What each accelerator means for a pod: its image, its device resource, taints and node selection.

The device resource and the taint of each accelerator are facts of its profile in
:mod:`sdxl_contract.accelerators`; what only the operator decides is here:

* neuron — the well-known ``node.kubernetes.io/instance-type`` label set to
  ``spec.neuron.instanceType``; image ``SDXL_IMAGE_NEURON``.
* nvidia — image ``SDXL_IMAGE_NVIDIA``.
* cpu — image ``SDXL_IMAGE_CPU``.

The image reference is also the compile key's runtime id: a compiled model belongs to the image that
compiled it and serves it (pin digests in production, so a moved tag cannot reuse an old compile).
Node selectors are merged operator settings first, then the spec's (the spec wins per key);
tolerations are concatenated without exact duplicates.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from sdxl_contract import accelerators
from sdxl_contract.accelerators import AcceleratorProfile
from sdxl_operator.core.settings import OperatorSettings

NEURON = accelerators.NEURON.name
NVIDIA = accelerators.NVIDIA.name
CPU = accelerators.CPU.name
INSTANCE_TYPE_LABEL = "node.kubernetes.io/instance-type"


def device_toleration(profile: AcceleratorProfile) -> list[dict[str, Any]]:
    """The toleration of the taint that ``profile``'s node pools carry, if they carry one."""
    if profile.node_taint_key is None:
        return []
    return [{"key": profile.node_taint_key, "operator": "Exists", "effect": "NoSchedule"}]



def image_for(accelerator: str, settings: OperatorSettings) -> str:
    """The workload image that compiles (or prepares) and serves for ``accelerator``."""
    images = {NEURON: settings.image_neuron, NVIDIA: settings.image_nvidia, CPU: settings.image_cpu}
    if accelerator not in images:
        raise ValueError(f"unknown accelerator {accelerator!r}; expected one of {', '.join(images)}")
    return images[accelerator]


def device_resources(accelerator: str) -> dict[str, str]:
    """The extended resource one server pod asks for (requests and limits alike)."""
    profile = accelerators.PROFILES.get(accelerator)
    return {profile.device_resource: "1"} if profile and profile.device_resource else {}


def merged_tolerations(*groups: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The tolerations of all groups in order, without exact duplicates."""
    result: list[dict[str, Any]] = []
    for group in groups:
        for toleration in group:
            item = dict(toleration)
            if item not in result:
                result.append(item)
    return result


def merged_selector(*groups: Mapping[str, str]) -> dict[str, str]:
    """Node selectors merged left to right (later groups win per key)."""
    merged: dict[str, str] = {}
    for group in groups:
        merged.update(group)
    return merged


def server_placement(
    accelerator: str, neuron: Mapping[str, Any] | None, resources: Mapping[str, Any], settings: OperatorSettings
) -> tuple[dict[str, str], list[dict[str, Any]]]:
    """(nodeSelector, tolerations) of a server pod."""
    spec_selector: Mapping[str, str] = resources.get("nodeSelector") or {}
    spec_tolerations: Iterable[Mapping[str, Any]] = resources.get("tolerations") or []
    if accelerator == NEURON:
        instance = {INSTANCE_TYPE_LABEL: str((neuron or {}).get("instanceType", "inf2.8xlarge"))}
        return (merged_selector(instance, settings.neuron_node_selector, spec_selector),
                merged_tolerations(device_toleration(accelerators.NEURON), settings.neuron_tolerations, spec_tolerations))
    if accelerator == NVIDIA:
        return (merged_selector(settings.nvidia_node_selector, spec_selector),
                merged_tolerations(device_toleration(accelerators.NVIDIA), settings.nvidia_tolerations, spec_tolerations))
    return merged_selector(spec_selector), merged_tolerations(spec_tolerations)

