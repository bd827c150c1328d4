"""Fixtures for the trainer's tests: spec files, a CLI runner and a fixed-noise evaluation.

Every run uses `builtin:tiny` at 64 px on CPU with one thread: the tiny model is overhead-bound,
and torch threads spinning against each other on a shared 2-core machine make it ~10x slower.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from sdxl_workloads import cli

PROMPT = "a photo of sks person"

# The smallest useful run: the contract defaults except what makes it fast on a CPU. The defaults
# themselves (bf16, checkpointing, class images, text encoders) run in test_train_production_defaults.
BASE_SPEC: dict[str, Any] = {
    "baseModel": "builtin:tiny",
    "instanceImages": "builtin:sample-subject",
    "instancePrompt": PROMPT,
    "training": {
        "maxSteps": 6,
        "learningRate": 1e-3,
        "resolution": 64,
        "mixedPrecision": "no",
        "gradientCheckpointing": False,
        "gradientAccumulation": 1,  # the default 4 quadruples every step's cost
        "checkpointEvery": 0,
    },
    "validation": {"numInferenceSteps": 2},
    "resources": {"gpus": 0, "cpu": "1"},
}


def spec_with(overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """BASE_SPEC with `overrides` merged in (nested mappings merge, other values replace)."""

    def merge(into: dict[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
        for key, value in new.items():
            if isinstance(value, Mapping) and isinstance(into.get(key), dict):
                merge(into[key], value)
            else:
                into[key] = copy.deepcopy(value)
        return into

    return merge(copy.deepcopy(BASE_SPEC), overrides or {})


@dataclass
class TrainResult:
    exit_code: int
    output: Path
    stdout_lines: list[str]
    result: dict[str, Any] | None  # the termination message
    events: list[dict[str, Any]] = field(default_factory=list)

    def of(self, event: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e.get("event") == event]


def run_train(workdir: Path, spec: Mapping[str, Any], output: str | Path | None = None,
              resume: str | None = None, name: str = "run") -> TrainResult:
    """`sdxl-workload train` in this process, with stdout captured and parsed line by line."""
    workdir.mkdir(parents=True, exist_ok=True)
    spec_file = workdir / f"{name}-spec.yaml"
    spec_file.write_text(yaml.safe_dump(dict(spec)))
    termination = workdir / f"{name}-termination-log"
    termination.unlink(missing_ok=True)
    output = output if output is not None else workdir / f"{name}-out"
    argv = ["train", "--spec", str(spec_file), "--output", str(output), "--termination-log", str(termination)]
    if resume:
        argv += ["--resume", resume]
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        code = cli.main(argv)
    lines = buffer.getvalue().splitlines()
    events = [json.loads(line) for line in lines if line.startswith("{")]
    result = json.loads(termination.read_text()) if termination.exists() else None
    return TrainResult(code, Path(str(output)), lines, result, events)


@pytest.fixture(autouse=True)
def _one_torch_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@dataclass
class FixedNoiseEval:
    """The denoising loss on the instance images with fixed noise, timesteps and prompt."""

    latents: torch.Tensor
    noise: torch.Tensor
    timesteps: torch.Tensor
    time_ids: torch.Tensor
    model_path: Path

    def unet_output(self, unet: Any, pipe: Any, prompt: str = PROMPT) -> torch.Tensor:
        from sdxl_workloads.train.training_loop import predict_noise

        embeds, pooled = self._conditioning(pipe, prompt)
        noisy = pipe_scheduler(self.model_path).add_noise(self.latents, self.noise, self.timesteps)
        with torch.no_grad():
            return predict_noise(unet, noisy, self.timesteps, embeds, pooled, self.time_ids)

    def loss(self, pipe: Any, prompt: str = PROMPT) -> float:
        from sdxl_workloads.train.training_loop import denoising_loss

        embeds, pooled = self._conditioning(pipe, prompt)
        with torch.no_grad():
            return float(denoising_loss(pipe.unet, pipe_scheduler(self.model_path), self.latents, self.noise,
                                        self.timesteps, embeds, pooled, self.time_ids).mean())

    def _conditioning(self, pipe: Any, prompt: str) -> tuple[torch.Tensor, torch.Tensor]:
        from sdxl_workloads.train.embedding_cache import encode_prompts

        with torch.no_grad():
            return encode_prompts([pipe.text_encoder, pipe.text_encoder_2], [pipe.tokenizer, pipe.tokenizer_2],
                                  [prompt] * len(self.latents))


def pipe_scheduler(model_path: Path) -> Any:
    from diffusers import DDPMScheduler

    return DDPMScheduler.from_pretrained(str(model_path), subfolder="scheduler")


def load_pipeline(model_path: Path, lora_dir: Path | None = None, weight_name: str | None = None) -> Any:
    """A fresh StableDiffusionXLPipeline from disk, optionally with a LoRA loaded the public way."""
    from diffusers import StableDiffusionXLPipeline

    pipe = StableDiffusionXLPipeline.from_pretrained(str(model_path))
    pipe.set_progress_bar_config(disable=True)
    if lora_dir is not None:
        kwargs = {"weight_name": weight_name} if weight_name else {}
        pipe.load_lora_weights(str(lora_dir), **kwargs)
    return pipe


def generate(pipe: Any, prompt: str = PROMPT, steps: int = 4) -> Any:
    generator = torch.Generator().manual_seed(0)
    return pipe(prompt, height=64, width=64, num_inference_steps=steps, guidance_scale=5.0,
                generator=generator, output_type="np").images


class TrainerKit:
    """The helpers above, handed to tests as the `kit` fixture (test modules cannot import a
    conftest under --import-mode=importlib)."""

    PROMPT = PROMPT
    spec_with = staticmethod(spec_with)
    run_train = staticmethod(run_train)
    load_pipeline = staticmethod(load_pipeline)
    generate = staticmethod(generate)


@pytest.fixture(scope="session")
def kit() -> type[TrainerKit]:
    return TrainerKit


@pytest.fixture(scope="session")
def fixed_noise_eval(tiny_model_path: Path, sample_images_path: Path) -> FixedNoiseEval:
    from sdxl_workloads.train.embedding_cache import cache_latents
    from sdxl_workloads.train.instance_data import load_instance_data
    from sdxl_workloads.train.training_data import pixels_from_images

    examples = load_instance_data(sample_images_path, PROMPT, 64).examples
    pipe = load_pipeline(tiny_model_path)
    with torch.no_grad():
        dists = cache_latents(pipe.vae, pixels_from_images([e.image for e in examples]), "cpu")
    latents = torch.stack([d.mean for d in dists])
    generator = torch.Generator().manual_seed(1234)
    return FixedNoiseEval(
        latents=latents,
        noise=torch.randn(latents.shape, generator=generator),
        # spread over the whole schedule, one timestep per image
        timesteps=torch.linspace(50, 950, len(latents)).long(),
        time_ids=torch.tensor([list(e.time_ids()) for e in examples], dtype=torch.float32),
        model_path=tiny_model_path,
    )
