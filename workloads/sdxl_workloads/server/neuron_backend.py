"""The Neuron backend: a folder compiled by `sdxl-workload compile` (optimum-neuron), whose
shapes are static. Requests must use the compiled image size; any number of images is served by
as many calls of the compiled batch as needed.

Runs only in the Neuron image (torch-neuronx); the shape reading and call planning below are
plain Python so they are tested everywhere.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sdxl_workloads.protocol import WorkloadError
from sdxl_workloads.server.backends import GenerationCancelled, GenerationParams, ModelLimits, ShouldStop


@dataclass(frozen=True)
class CompiledShape:
    batch_size: int  # prompts per call
    num_images_per_prompt: int
    height: int  # pixels
    width: int

    @property
    def images_per_call(self) -> int:
        return self.batch_size * self.num_images_per_prompt


def _neuron_block(folder: Path, component: str) -> dict[str, Any]:
    path = folder / component / "config.json"
    try:
        config = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise WorkloadError("InvalidInput", f"{path}: cannot read the compiled model's config ({err}); "
                                            "is this a folder written by `sdxl-workload compile`?") from err
    block = config.get("neuron")
    if not isinstance(block, dict):
        raise WorkloadError("InvalidInput", f"{path}: has no 'neuron' section; this is not a Neuron-compiled model")
    return block


def read_compiled_shape(folder: str | Path) -> CompiledShape:
    """The static shapes optimum-neuron stored in each component's config.json `neuron` block.

    The UNet is compiled at batch_size * num_images_per_prompt with latent height/width
    (`optimum/exporters/neuron/utils.py: build_stable_diffusion_components_mandatory_shapes`);
    the text encoder at batch_size; pixels = latent * the VAE's scale factor
    (`NeuronDiffusionPipelineBase.__call__`).
    """
    folder = Path(folder)
    unet = _neuron_block(folder, "unet")
    text = _neuron_block(folder, "text_encoder")
    try:
        scale = 8
        decoder_config = folder / "vae_decoder" / "config.json"
        if decoder_config.is_file():
            channels = json.loads(decoder_config.read_text()).get("block_out_channels")
            if channels:
                scale = 2 ** (len(channels) - 1)
        batch = int(text["static_batch_size"])
        unet_batch = int(unet["static_batch_size"])
        return CompiledShape(
            batch_size=batch,
            num_images_per_prompt=max(1, unet_batch // batch),
            height=int(unet["static_height"]) * scale,
            width=int(unet["static_width"]) * scale,
        )
    except (KeyError, TypeError, ValueError, ZeroDivisionError) as err:
        raise WorkloadError("InvalidInput", f"{folder}: the compiled configs lack static shapes ({err!r})") from err


@dataclass(frozen=True)
class Slot:
    """One prompt position of a compiled call: up to num_images_per_prompt images of one request."""

    request: int  # index in the batch
    seeds: tuple[int, ...]  # exactly num_images_per_prompt seeds (padding seeds' images are dropped)
    keep: int  # how many of its images the request wants


def plan_calls(batch: Sequence[GenerationParams], shape: CompiledShape) -> list[list[Slot]]:
    """Split a batch into calls of exactly `shape.batch_size` slots, padding the last call by
    repeating its final slot (the padding's images are discarded)."""
    per = shape.num_images_per_prompt
    slots: list[Slot] = []
    for index, params in enumerate(batch):
        seeds = params.image_seeds()
        for start in range(0, len(seeds), per):
            chunk = seeds[start:start + per]
            keep = len(chunk)
            # Pad with the seeds that would come next, so padded images are still well-defined.
            chunk += [seeds[-1] + 1 + k for k in range(per - keep)]
            slots.append(Slot(request=index, seeds=tuple(chunk), keep=keep))
    calls = [slots[i:i + shape.batch_size] for i in range(0, len(slots), shape.batch_size)]
    if calls and len(calls[-1]) < shape.batch_size:
        last = calls[-1][-1]
        calls[-1] = calls[-1] + [Slot(request=last.request, seeds=last.seeds, keep=0)] * (
            shape.batch_size - len(calls[-1]))
    return calls


class NeuronBackend:
    def __init__(self, model: str) -> None:
        self.model = model
        self.description = f"{model} (neuron)"
        self.pipeline: Any = None
        self.shape: CompiledShape | None = None

    def load(self) -> ModelLimits:
        from sdxl_workloads.models.references import resolve_model

        self.model_path = resolve_model(self.model)
        shape = read_compiled_shape(self.model_path)
        # Only importable in the Neuron image; written by the compile step's owner.
        from sdxl_workloads.models.neuron_export import load_neuron_pipeline

        self.pipeline = load_neuron_pipeline(self.model_path)
        self.shape = shape
        return ModelLimits(default_width=shape.width, default_height=shape.height,
                           min_side=min(shape.width, shape.height), max_side=max(shape.width, shape.height),
                           fixed_size=(shape.width, shape.height), max_batch_images=shape.images_per_call)

    def generate(self, batch: Sequence[GenerationParams], should_stop: ShouldStop) -> list[list[Any]]:
        import torch

        assert self.shape is not None, "load() first"
        first = batch[0]
        results: list[list[Any]] = [[] for _ in batch]

        def stop_between_steps(pipe: Any, step: int, timestep: Any, tensors: dict[str, Any]) -> dict[str, Any]:
            # optimum-neuron runs diffusers' own denoising loop around the compiled UNet, so the
            # step callback works here as on a GPU: a batch whose clients all left stops within a step.
            if should_stop():
                raise GenerationCancelled("every request of this batch gave up")
            return tensors

        for call in plan_calls(batch, self.shape):
            if should_stop():  # and between compiled calls
                raise GenerationCancelled("every request of this batch gave up")
            output = self.pipeline(
                prompt=[batch[slot.request].prompt for slot in call],
                negative_prompt=([batch[slot.request].negative_prompt or "" for slot in call]
                                 if first.negative_prompt is not None else None),
                num_inference_steps=first.num_inference_steps,
                guidance_scale=first.guidance_scale,
                num_images_per_prompt=self.shape.num_images_per_prompt,
                generator=[torch.Generator("cpu").manual_seed(seed) for slot in call for seed in slot.seeds],
                callback_on_step_end=stop_between_steps,
            )
            images = list(output.images)
            per = self.shape.num_images_per_prompt
            for position, slot in enumerate(call):
                results[slot.request].extend(images[position * per: position * per + slot.keep])
        return results
