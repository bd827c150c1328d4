"""The LoRA a compile or prepare fuses: find the file, hash it, and check it fits the base model.

The fit check runs before any weights are loaded: the LoRA's layers are matched against the base
model's modules built on the meta device from its configs alone (free even for the real SDXL), so a
LoRA made for another architecture (SD 1.5, SD 2.x, another SDXL size) fails in seconds with
InvalidInput instead of deep inside a 40-minute compile, or worse, loading silently with some layers
ignored.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sdxl_workloads.protocol import WorkloadError

# The file name `save_lora_weights` writes and the trainer publishes.
DEFAULT_WEIGHT_NAME = "pytorch_lora_weights.safetensors"
COMPONENTS = ("unet", "text_encoder", "text_encoder_2")
# Suffix of a LoRA weight key -> which matrix it is. peft's names first, then diffusers' older ones.
_LORA_SUFFIXES = {
    ".lora_A.weight": "down", ".lora_B.weight": "up",
    ".lora.down.weight": "down", ".lora.up.weight": "up",
    ".lora_linear_layer.down.weight": "down", ".lora_linear_layer.up.weight": "up",
}
# `<attention>.processor.to_q_lora.down.weight` -> module `<attention>.to_q`, matrix down.
_PROCESSOR_KEY = re.compile(r"^(.*)\.processor\.(\w+)_lora\.(down|up)\.weight$")
_PROCESSOR_MODULES = {"to_out": "to_out.0"}
_EXAMPLES = 3


def locate_lora_file(path: Path, field: str = "lora") -> Path:
    """The safetensors file behind a LoRA URI that named a file or a folder."""
    if path.is_dir():
        default = path / DEFAULT_WEIGHT_NAME
        if default.is_file():
            return default
        candidates = sorted(p for p in path.glob("*.safetensors") if p.is_file())
        if len(candidates) == 1:
            return candidates[0]
        found = ", ".join(p.name for p in candidates) or "none"
        raise WorkloadError("InvalidInput", f"{field}: folder {path} has no {DEFAULT_WEIGHT_NAME} and not exactly "
                                            f"one .safetensors file (found: {found}); point it at the LoRA file")
    if not path.exists():
        raise WorkloadError("InvalidInput", f"{field}: {path} does not exist; give the URI of a LoRA "
                                            f"safetensors file (e.g. <fine-tune output>/lora/{DEFAULT_WEIGHT_NAME})")
    if not path.is_file():
        raise WorkloadError("InvalidInput", f"{field}: {path} is not a regular file")
    # No check of the name here: a downloaded copy may be named by the cache. The content is checked.
    return path


def stage_lora_file(lora_file: Path, folder: Path) -> Path:
    """A copy named `pytorch_lora_weights.safetensors` in `folder`, for loaders that go by the name.

    diffusers (and optimum-neuron through it) reads a LoRA with safetensors only when its name ends in
    `.safetensors`, and otherwise falls back to unpickling it; a cached download may have any name.
    """
    folder.mkdir(parents=True, exist_ok=True)
    staged = folder / DEFAULT_WEIGHT_NAME
    shutil.copyfile(lora_file, staged)
    return staged


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_safetensors_header(path: Path) -> dict[str, Any]:
    """The JSON header of a safetensors file (names, dtypes, shapes), without reading any tensor."""
    try:
        with path.open("rb") as f:
            (length,) = struct.unpack("<Q", f.read(8))
            if length > 100 * 1024 * 1024:
                raise ValueError("header length out of range")
            header = json.loads(f.read(length))
        if not isinstance(header, dict):
            raise ValueError("header is not an object")
    except (struct.error, ValueError, UnicodeDecodeError) as err:
        raise WorkloadError("InvalidInput", f"lora: {path.name} is not a valid safetensors file ({err}); LoRAs "
                                            "are read from safetensors only (a pickled .bin/.pt file can run "
                                            "code): convert it to safetensors") from err
    header.pop("__metadata__", None)
    return header


def check_is_lora(path: Path) -> None:
    """A safetensors file whose tensors are LoRA matrices (peft, diffusers or kohya naming)."""
    names = read_safetensors_header(path)
    if not any("lora" in name.lower() for name in names):
        example = ", ".join(sorted(names)[:_EXAMPLES]) or "no tensors"
        raise WorkloadError("InvalidInput", f"lora: {path} holds no LoRA weights (tensors: {example}); "
                                            "is it a full model checkpoint rather than a LoRA?")


@dataclass(frozen=True)
class LoraLayer:
    component: str  # unet | text_encoder | text_encoder_2
    module: str  # dotted module path inside the component
    role: str  # down (A: rank x in) | up (B: out x rank)
    shape: tuple[int, ...]


def lora_layers(state_dict: Mapping[str, Any]) -> list[LoraLayer]:
    """The LoRA matrices of a diffusers-format state dict (as `lora_state_dict` returns it)."""
    layers = []
    for key, tensor in state_dict.items():
        processor = _PROCESSOR_KEY.match(key)
        if processor:
            # diffusers' kohya conversion names attention LoRAs after the old attention processors.
            prefix, name, role = processor.groups()
            component, _, module = f"{prefix}.{_PROCESSOR_MODULES.get(name, name)}".partition(".")
            layers.append(LoraLayer(component, module, role, tuple(tensor.shape)))
            continue
        for suffix, role in _LORA_SUFFIXES.items():
            if key.endswith(suffix):
                component, _, module = key[: -len(suffix)].partition(".")
                layers.append(LoraLayer(component, module, role, tuple(tensor.shape)))
                break
    return layers


def _module_dims(module: Any) -> tuple[int, int] | None:
    """(in, out) features of a Linear or Conv2d, the layers a LoRA adapts."""
    if hasattr(module, "in_features"):
        return int(module.in_features), int(module.out_features)
    if hasattr(module, "in_channels") and hasattr(module, "out_channels"):
        return int(module.in_channels), int(module.out_channels)
    return None


def mismatches(layers: list[LoraLayer], components: Mapping[str, Any]) -> tuple[list[str], list[str]]:
    """(layers whose module the base lacks, layers whose dimensions differ from the base's)."""
    missing: list[str] = []
    wrong: list[str] = []
    for layer in layers:
        name = f"{layer.component}.{layer.module}"
        model = components.get(layer.component)
        if model is None:
            missing.append(name)
            continue
        path = layer.module
        if path.startswith("text_model.") and not hasattr(model, "text_model"):
            # transformers 5 flattened CLIPTextModel; diffusers strips the prefix the same way on load.
            path = path.removeprefix("text_model.")
        try:
            module = model.get_submodule(path)
        except AttributeError:
            missing.append(name)
            continue
        dims = _module_dims(module)
        if dims is None:
            wrong.append(f"{name} (the base's layer is a {type(module).__name__}, not a linear or conv layer)")
            continue
        in_dim, out_dim = dims
        if layer.role == "down" and (len(layer.shape) < 2 or layer.shape[1] != in_dim):
            wrong.append(f"{name} (LoRA input size {layer.shape[1:2]}, base {in_dim})")
        elif layer.role == "up" and layer.shape[0] != out_dim:
            wrong.append(f"{name} (LoRA output size {layer.shape[0]}, base {out_dim})")
    return missing, wrong


def _meta_components(base_model: str, revision: str | None, needed: set[str]) -> dict[str, Any]:
    """The base's UNet / text encoders with meta tensors: architecture only, no weights read."""
    from accelerate import init_empty_weights
    from diffusers import UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    kwargs: dict[str, Any] = {"revision": revision} if revision else {}
    built: dict[str, Any] = {}
    try:
        with init_empty_weights():
            if "unet" in needed:
                config = UNet2DConditionModel.load_config(base_model, subfolder="unet", **kwargs)
                built["unet"] = UNet2DConditionModel.from_config(config)
            if "text_encoder" in needed:
                built["text_encoder"] = CLIPTextModel(
                    CLIPTextConfig.from_pretrained(base_model, subfolder="text_encoder", **kwargs))
            if "text_encoder_2" in needed:
                built["text_encoder_2"] = CLIPTextModelWithProjection(
                    CLIPTextConfig.from_pretrained(base_model, subfolder="text_encoder_2", **kwargs))
    except (OSError, ValueError) as err:
        raise WorkloadError("InvalidInput", f"baseModel: cannot read the model configs of {base_model!r} "
                                            f"({err}); give a diffusers-format SDXL folder, a Hugging Face "
                                            "model id, or builtin:tiny") from err
    return built


def check_lora_fits_base(lora_file: Path, base_model: str, revision: str | None,
                         base_label: str | None = None, lora_label: str | None = None) -> int:
    """Raise InvalidInput unless every LoRA layer adapts a module of the base with the same sizes.

    Returns the number of LoRA matrices checked. Kohya/A1111 files are converted to diffusers names by
    diffusers' own `lora_state_dict` first, the same conversion `load_lora_weights` applies.
    """
    from diffusers import StableDiffusionXLPipeline

    check_is_lora(lora_file)
    label = base_label or base_model
    name = lora_label or lora_file.name
    try:
        state_dict, _alphas = StableDiffusionXLPipeline.lora_state_dict(str(lora_file))
    except Exception as err:  # diffusers raises ValueError/KeyError/... for formats it cannot convert
        raise WorkloadError("InvalidInput", f"lora: {name} is not a LoRA diffusers can read for SDXL "
                                            f"({type(err).__name__}: {err})") from err
    layers = lora_layers(state_dict)
    if not layers:
        raise WorkloadError("InvalidInput", f"lora: {name} has no UNet or text-encoder LoRA layers "
                                            "diffusers recognises for SDXL")
    unknown = sorted({layer.component for layer in layers} - set(COMPONENTS))
    components = _meta_components(base_model, revision, {layer.component for layer in layers} & set(COMPONENTS))
    missing, wrong = mismatches(layers, components)
    if unknown or missing or wrong:
        parts = []
        if unknown:
            parts.append(f"it adapts components SDXL does not have ({', '.join(unknown)})")
        if missing:
            parts.append(f"{len(missing)} of {len(layers)} LoRA matrices target layers the base does not have "
                         f"(e.g. {', '.join(list(dict.fromkeys(missing))[:_EXAMPLES])})")
        if wrong:
            examples = "; ".join(list(dict.fromkeys(wrong))[:_EXAMPLES])
            parts.append(f"{len(wrong)} have other sizes than the base's layers (e.g. {examples})")
        raise WorkloadError(
            "InvalidInput",
            f"lora: {name} does not fit the base model {label}: {'; '.join(parts)}. "
            "It was probably trained for another base model (SD 1.5, SD 2.x, another SDXL variant); "
            "use a LoRA trained on this base, or set baseModel to the model it was trained on.",
        )
    return len(layers)
