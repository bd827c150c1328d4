"""Write the trained LoRA in the formats people load.

- `lora/pytorch_lora_weights.safetensors`: diffusers format, `pipe.load_lora_weights(dir)`; the
  adapter config (rank, alpha, target modules) goes into the file's metadata so alpha != rank
  reloads with the right scale.
- `lora/<name>_kohya.safetensors`: kohya/A1111/ComfyUI keys (`lora_unet_*`, `lora_te1_*`,
  `lora_te2_*`, `.lora_down/.lora_up` plus an `.alpha` tensor per module).
- `training_args.json`: the resolved spec and library versions, so a LoRA can be traced back.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

import torch

DIFFUSERS_WEIGHT_NAME = "pytorch_lora_weights.safetensors"


def peft_lora_state(model: Any) -> dict[str, torch.Tensor]:
    from peft.utils import get_peft_model_state_dict

    return {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in get_peft_model_state_dict(model).items()}


def save_diffusers_lora(directory: Path, unet: Any, text_encoder_one: Any | None = None,
                        text_encoder_two: Any | None = None) -> Path:
    """diffusers' `save_lora_weights`, as the DreamBooth SDXL script calls it; returns the file."""
    from diffusers import StableDiffusionXLPipeline
    from diffusers.utils import convert_state_dict_to_diffusers

    def layers(model: Any | None) -> dict[str, torch.Tensor] | None:
        return convert_state_dict_to_diffusers(peft_lora_state(model)) if model is not None else None

    def metadata(model: Any | None) -> dict[str, Any] | None:
        if model is None:
            return None
        # peft keeps target_modules as a set, whose order changes from process to process; sorted,
        # the same weights always give the same file (its sha256 keys the compile cache).
        config = model.peft_config["default"].to_dict()
        return {k: sorted(v) if isinstance(v, set | frozenset) else v for k, v in config.items()}

    directory.mkdir(parents=True, exist_ok=True)
    StableDiffusionXLPipeline.save_lora_weights(
        directory,
        unet_lora_layers=layers(unet),
        text_encoder_lora_layers=layers(text_encoder_one),
        text_encoder_2_lora_layers=layers(text_encoder_two),
        unet_lora_adapter_metadata=metadata(unet),
        text_encoder_lora_adapter_metadata=metadata(text_encoder_one),
        text_encoder_2_lora_adapter_metadata=metadata(text_encoder_two),
        weight_name=DIFFUSERS_WEIGHT_NAME,
        safe_serialization=True,
    )
    return directory / DIFFUSERS_WEIGHT_NAME


def kohya_state_dict(diffusers_state: dict[str, torch.Tensor], alpha: float) -> dict[str, torch.Tensor]:
    """Convert a diffusers-format SDXL LoRA state dict to kohya keys (diffusers' own converters).

    diffusers writes alpha = rank; the trained alpha is written instead, so the kohya copy applies
    the same scale (alpha / rank) as the diffusers file.
    """
    from diffusers.utils import convert_all_state_dict_to_peft, convert_state_dict_to_kohya

    kohya = convert_state_dict_to_kohya(convert_all_state_dict_to_peft(diffusers_state))
    for key in [k for k in kohya if k.endswith(".alpha")]:
        kohya[key] = torch.tensor(float(alpha))
    return {k: v.contiguous() for k, v in kohya.items()}


def save_kohya_lora(diffusers_file: Path, out_file: Path, alpha: float) -> Path:
    from safetensors.torch import load_file, save_file

    save_file(kohya_state_dict(load_file(str(diffusers_file)), alpha), str(out_file),
              metadata={"ss_network_module": "networks.lora", "ss_network_alpha": str(alpha),
                        "ss_base_model_version": "sdxl_base_v1-0"})
    return out_file


def kohya_file_name(run_name: str) -> str:
    """`<name>_kohya.safetensors`, with the name made safe for any file system and UI."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", run_name).strip("-.") or "lora"
    return f"{slug[:80]}_kohya.safetensors"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def library_versions() -> dict[str, str]:
    import accelerate
    import diffusers
    import peft
    import transformers

    return {"torch": torch.__version__, "diffusers": diffusers.__version__,
            "transformers": transformers.__version__, "peft": peft.__version__,
            "accelerate": accelerate.__version__}


def write_training_args(path: Path, spec: dict[str, Any], extra: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    document = {"spec": spec, "versions": library_versions(), **extra}
    path.write_text(json.dumps(document, indent=2, sort_keys=True, default=str) + "\n")
    return path
