"""The accelerators a model is served on, one profile each: what the operator and the workloads both know.

The operator turns a profile into a pod (the extended resource it asks for, the taint it tolerates);
the workloads and the compile key read whether the accelerator compiles ahead of time for fixed
shapes. Placement the operator alone decides (node selectors, instance types, images) stays in
``sdxl_operator.core.accelerators``.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class AcceleratorProfile:
    """One accelerator of ``SDXLDeployment.spec.accelerator``."""

    name: str
    # The Kubernetes extended resource one server pod asks for (one unit), None for plain CPU.
    device_resource: str | None
    # The taint its node pools carry (effect NoSchedule), which workload pods tolerate.
    node_taint_key: str | None
    # True: the model is compiled ahead of time for fixed shapes and compiler settings (Neuron), so
    # those count in the compile key; False: the pipeline is only prepared (fused LoRA, dynamic shapes).
    compiles_for_fixed_shapes: bool
    # optimum-neuron's ``auto_cast`` (which operations are cast to ``autoCastType``); always this value,
    # and part of the compile key so a change to it recompiles. None where nothing is compiled.
    # Neuron casts matmuls only: the default of optimum-neuron's Python API (its CLI casts nothing).
    auto_cast: str | None


NEURON = AcceleratorProfile(
    # One device = both NeuronCores of an Inferentia2 chip (the server uses them data-parallel);
    # the EKS Neuron node groups carry the taint.
    name="neuron", device_resource="aws.amazon.com/neuron", node_taint_key="aws.amazon.com/neuron",
    compiles_for_fixed_shapes=True, auto_cast="matmul",
)
NVIDIA = AcceleratorProfile(
    name="nvidia", device_resource="nvidia.com/gpu", node_taint_key="nvidia.com/gpu",
    compiles_for_fixed_shapes=False, auto_cast=None,
)
CPU = AcceleratorProfile(
    name="cpu", device_resource=None, node_taint_key=None, compiles_for_fixed_shapes=False, auto_cast=None,
)

PROFILES: dict[str, AcceleratorProfile] = {profile.name: profile for profile in (NEURON, NVIDIA, CPU)}
# The names, in the order the CRD lists them.
ACCELERATORS: tuple[str, ...] = tuple(PROFILES)


def profile_of(accelerator: str) -> AcceleratorProfile:
    """The profile of ``accelerator``; ValueError naming the known ones if there is none."""
    try:
        return PROFILES[accelerator]
    except KeyError:
        raise ValueError(f"unknown accelerator {accelerator!r}; expected one of {', '.join(ACCELERATORS)}") from None
