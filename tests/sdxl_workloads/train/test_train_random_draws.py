"""Every random generator lives on the device of the tensors it fills.

CUDA refuses a CPU generator for a CUDA tensor; the CPU, where these tests run, cannot show that,
because every tensor and generator shares its one device. So the rule is held structurally:
the trainer's draws all go through random_draws, which checks the generator's device against the
target's on every device (a meta tensor stands in for "another device" here), and no other module
creates a generator or draws with one (a scan of the source).
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import pytest
import torch

from sdxl_workloads import random_draws
from sdxl_workloads.train.embedding_cache import LatentDistribution

PACKAGE = Path(random_draws.__file__).parent  # the whole sdxl_workloads package
# The inference server hands its generators to diffusers pipelines only, whose `randn_tensor` draws
# on the generator's device and moves the result: CPU generators are correct there by design.
SERVER = PACKAGE / "server"
TORCH_DRAWS = {"randn", "rand", "randint", "randn_like", "rand_like", "randint_like", "randperm", "normal",
               "bernoulli", "multinomial", "poisson"}


def _violations(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
            continue
        owner = node.func.value
        is_torch = isinstance(owner, ast.Name) and owner.id == "torch"
        name = node.func.attr
        if is_torch and name == "Generator":
            found.append(f"{path.name}:{node.lineno} creates torch.Generator")
        elif (is_torch and name in TORCH_DRAWS) or (name.endswith("_") and any(k.arg == "generator" for k in node.keywords)):
            found.append(f"{path.name}:{node.lineno} draws with torch.{name}")
    return found


def test_no_module_but_random_draws_creates_a_generator_or_draws_with_torch() -> None:
    files = [p for p in PACKAGE.rglob("*.py") if p.name != "random_draws.py" and SERVER not in p.parents]
    assert len(files) > 20  # the scan sees the package
    violations = [v for f in files for v in _violations(f)]
    assert violations == [], "draw through sdxl_workloads.random_draws instead:\n" + "\n".join(violations)


def test_the_scan_finds_a_direct_draw(tmp_path: Path) -> None:
    planted = tmp_path / "planted.py"
    planted.write_text("import torch\n"
                       "g = torch.Generator().manual_seed(0)\n"
                       "x = torch.randn((2,), generator=g, device='cuda')\n"
                       "y = torch.empty(2).normal_(generator=g)\n")
    assert len(_violations(planted)) == 3


def test_a_draw_for_another_device_than_the_generators_is_refused() -> None:
    generator = random_draws.training_generator("cpu", 0)
    # torch itself accepts this pair for meta tensors, as it would not for CUDA ones: the helper's
    # own check is what refuses it, on every device.
    with pytest.raises(random_draws.GeneratorDeviceError, match="meta"):
        random_draws.randn((2, 2), generator=generator, device="meta")
    with pytest.raises(random_draws.GeneratorDeviceError):
        random_draws.randint(0, 10, (3,), generator=generator, device="meta")
    assert random_draws.randn((2,), generator=generator, device="cpu").device.type == "cpu"


def test_latent_samples_refuse_a_generator_on_another_device() -> None:
    dist = LatentDistribution(torch.zeros(4, 2, 2, device="meta"), torch.ones(4, 2, 2, device="meta"))
    with pytest.raises(random_draws.GeneratorDeviceError):
        dist.sample(random_draws.training_generator("cpu", 0))


def test_same_device_treats_the_current_gpu_and_gpu_zero_alike() -> None:
    assert random_draws.same_device(torch.device("cuda", 0), torch.device("cuda"))
    assert not random_draws.same_device(torch.device("cuda", 0), torch.device("cuda", 1))
    assert not random_draws.same_device(torch.device("cpu"), torch.device("cuda"))


def test_every_draw_of_a_training_run_is_checked_on_the_latents_device(
        tmp_path: Path, kit: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """A run with class images, flips and offset noise: the noise, offsets, timesteps and latent
    samples are all drawn through the check, on the accelerator's device, from the run's generator."""
    checked: list[tuple[torch.device, torch.device]] = []
    original = random_draws.check_generator_device

    def recording(generator: torch.Generator, device: Any) -> torch.device:
        checked.append((generator.device, torch.device(device)))
        return original(generator, device)

    monkeypatch.setattr(random_draws, "check_generator_device", recording)
    spec = kit.spec_with({
        "classPrompt": "a photo of a person",
        "priorPreservation": {"enabled": True, "numClassImages": 2},
        "training": {"maxSteps": 2, "noiseOffset": 0.05},
    })
    result = kit.run_train(tmp_path, spec)
    assert result.exit_code == 0, result.stdout_lines[-5:]
    # per micro-batch: 1 instance + 1 class latent sample, noise, offset, timesteps
    assert len(checked) >= 2 * 5
    assert {pair for pair in checked} == {(torch.device("cpu"), torch.device("cpu"))}
