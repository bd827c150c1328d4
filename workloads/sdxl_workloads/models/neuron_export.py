"""Compile SDXL + a fused LoRA for AWS Inferentia2 with optimum-neuron, and load the result.

The only module that imports optimum-neuron, and only inside functions: it needs torch-neuronx and
neuronx-cc, which exist only in the Neuron image. Pinned: optimum-neuron 0.4.5 (Neuron SDK 2.26.1).

Why `main_export` and not `NeuronStableDiffusionXLPipeline.from_pretrained(export=True)`:
in optimum-neuron 0.4.5 `from_pretrained(export=True)` compiles into a `TemporaryDirectory` and,
when the machine has no Neuron device, logs "Model loading is skipped" and returns None. The
temporary directory is then garbage-collected with the compiled model in it, so a compile Job on
a big CPU node (the cheap place to compile) would lose its result. `main_export`, which both
`_export` and `optimum-cli export neuron` call, writes straight into a folder we choose. We call it
with exactly the arguments `_export` would pass, and the result loads with
`NeuronStableDiffusionXLPipeline.from_pretrained(folder)` (no copy of the ~7.6 GB artifact either).

The keyword arguments are built by the pure functions below, so the contract test
(tests/contract/test_neuron_api_contract.py) checks these very names against optimum-neuron's source.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

from sdxl_contract import accelerators

OPTIMUM_NEURON_VERSION = "0.4.5"
# The optimum task of StableDiffusionXLPipeline ("stable-diffusion-xl" is its synonym).
EXPORT_TASK = "text-to-image"
LIBRARY_NAME = "diffusers"
# Compile for Inferentia2 whatever the compiling machine is: a CPU node compiles as well as an inf2 one.
COMPILE_TARGET = "inf2"
LORA_ADAPTER_NAME = "finetune"
# The optimum-neuron class that loads a compiled folder (also the class `from_pretrained` exports with).
PIPELINE_CLASS = "NeuronStableDiffusionXLPipeline"

# Where each name we import lives in optimum-neuron 0.4.5 (module -> names); the contract test checks them.
OPTIMUM_IMPORTS: dict[str, tuple[str, ...]] = {
    "optimum.exporters.neuron": ("main_export", "normalize_diffusers_input_shapes"),
    "optimum.neuron.utils.argument_utils": ("LoRAAdapterArguments", "InputShapesArguments"),
    "optimum.neuron.utils.instance": ("align_compilation_target",),
    "optimum.neuron": (PIPELINE_CLASS,),
}


def lora_arguments(lora_file: Path, lora_scale: float) -> dict[str, Any]:
    """Fields of `LoRAAdapterArguments`: one adapter, fused into the weights at `lora_scale`.

    optimum-neuron fuses it before tracing (`load_lora_weights` + `fuse_lora(lora_scale=...)`):
    a compiled SDXL cannot swap LoRA weights later.
    """
    return {
        "model_ids": [str(lora_file.parent)],
        "weight_names": [lora_file.name],
        "adapter_names": [LORA_ADAPTER_NAME],
        # a list of floats: a bare int would not be wrapped into a list by optimum-neuron
        "scales": [float(lora_scale)],
    }


def input_shape_arguments(batch_size: int, height: int, width: int,
                          num_images_per_prompt: int) -> dict[str, Any]:
    """Fields of `InputShapesArguments` for `normalize_diffusers_input_shapes`, as `_export` builds them."""
    return {"batch_size": batch_size, "height": height, "width": width,
            "num_images_per_prompt": num_images_per_prompt}


def compiler_arguments(auto_cast_type: str) -> dict[str, Any]:
    """The `compiler_kwargs` mapping `main_export` passes on to neuronx-cc's flags."""
    return {"auto_cast": accelerators.NEURON.auto_cast, "auto_cast_type": auto_cast_type, "instance_type": COMPILE_TARGET}


def main_export_arguments(base_model: str, revision: str | None, output_dir: Path,
                          compiler_workdir: Path | None = None) -> dict[str, Any]:
    """Keyword arguments of `main_export` other than compiler_kwargs, lora_args and the shapes."""
    return {
        "model_name_or_path": base_model,
        "output": output_dir,
        "task": EXPORT_TASK,
        "library_name": LIBRARY_NAME,
        "revision": revision or "main",
        # Its compile cache keys on the base model and shapes, not the LoRA: a hit would serve
        # another fine-tune's weights. Our own compile key caches whole artifacts instead.
        "disable_neuron_cache": True,
        # SDXL's UNet does not compile with separated weights since SDK 2.18 (aws-neuron-sdk#859).
        "inline_weights_to_neff": True,
        # Validation runs the compiled model, which needs a Neuron device; the server's readiness
        # probe is the check that matters.
        "do_validation": False,
        "compiler_workdir": compiler_workdir,
        "submodels": {"unet": None},
    }


def export_neuron_pipeline(
    *,
    base_model: str,
    revision: str | None,
    lora_file: Path,
    lora_scale: float,
    batch_size: int,
    height: int,
    width: int,
    num_images_per_prompt: int,
    auto_cast_type: str,
    output_dir: Path,
    compiler_workdir: Path | None = None,
) -> Path:
    """Compile base + fused LoRA into `output_dir` (model_index.json, unet/model.neuron, ...)."""
    from optimum.exporters.neuron import main_export, normalize_diffusers_input_shapes
    from optimum.neuron.utils.argument_utils import InputShapesArguments, LoRAAdapterArguments
    from optimum.neuron.utils.instance import align_compilation_target

    # As the CLI does: set the target before neuronx-distributed initialises, overriding the
    # machine's own type (a CPU node has none; an inf2 node agrees anyway).
    align_compilation_target(COMPILE_TARGET, override=True)
    shapes = asdict(InputShapesArguments(**input_shape_arguments(batch_size, height, width,
                                                                 num_images_per_prompt)))
    main_export(
        **main_export_arguments(base_model, revision, output_dir, compiler_workdir),
        compiler_kwargs=compiler_arguments(auto_cast_type),
        lora_args=LoRAAdapterArguments(**lora_arguments(lora_file, lora_scale)),
        **normalize_diffusers_input_shapes(shapes),
    )
    return output_dir


def load_neuron_pipeline(model_dir: str | Path) -> Any:
    """Load a compiled folder onto the Neuron device (the UNet data-parallel on both cores)."""
    from optimum.neuron import NeuronStableDiffusionXLPipeline

    return NeuronStableDiffusionXLPipeline.from_pretrained(str(model_dir))
