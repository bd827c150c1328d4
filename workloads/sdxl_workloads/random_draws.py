"""Every random generator the workloads create, and every draw the trainer makes with one.

CUDA refuses to fill a tensor from a generator on another device (`Expected a 'cuda' device type
for generator but found 'cpu'`, diffusers#6501), and a CPU-only test run cannot see that: on the
CPU every generator and every tensor share one device. So the rule is made structural: the
trainer draws only through `randn` / `randint` here, which check the generator's device against
the target tensor's before drawing, on every device; and no other training module creates a
generator or calls torch's random functions with one (tests/sdxl_workloads/train/
test_train_random_draws.py scans the source for that).

Pipelines are the one exception: diffusers' `randn_tensor` draws from a CPU generator on the CPU
and moves the result, so a CPU generator gives the same images on every device. They get one from
`pipeline_generator`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


class GeneratorDeviceError(RuntimeError):
    """A draw was asked for on another device than its generator's."""


def same_device(generator_device: torch.device, target: torch.device) -> bool:
    """cuda and cuda:0 are the same device for the current GPU; indexes must match when both are given."""
    if generator_device.type != target.type:
        return False
    return generator_device.index is None or target.index is None or generator_device.index == target.index


def check_generator_device(generator: torch.Generator, device: torch.device | str) -> torch.device:
    """The target device, after checking the generator lives there (raises GeneratorDeviceError)."""
    target = torch.device(device)
    if not same_device(generator.device, target):
        raise GeneratorDeviceError(
            f"a random draw for a tensor on {target} was given a generator on {generator.device}; "
            "create the generator with random_draws.training_generator(device, seed)"
        )
    return target


def training_generator(device: torch.device | str, seed: int) -> torch.Generator:
    """The trainer's noise stream, on the device of the latents it fills."""
    return torch.Generator(device=torch.device(device)).manual_seed(seed)


def pipeline_generator(seed: int) -> torch.Generator:
    """A generator for a diffusers pipeline call: CPU by design (see the module's docstring)."""
    return torch.Generator(device="cpu").manual_seed(seed)


def randn(shape: Sequence[int], *, generator: torch.Generator, device: torch.device | str,
          dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Standard normal noise drawn on `device` from a generator that must live there."""
    target = check_generator_device(generator, device)
    return torch.randn(tuple(shape), generator=generator, device=target, dtype=dtype)


def randint(low: int, high: int, shape: Sequence[int], *, generator: torch.Generator,
            device: torch.device | str) -> torch.Tensor:
    """Uniform integers in [low, high) drawn on `device` from a generator that must live there."""
    target = check_generator_device(generator, device)
    return torch.randint(low, high, tuple(shape), generator=generator, device=target)
