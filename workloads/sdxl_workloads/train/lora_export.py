"""Write the trained LoRA in the formats people load.

- `lora/pytorch_lora_weights.safetensors`: diffusers' LoRA file, `pipe.load_lora_weights(dir)`,
  with the adapter config (rank, alpha, target modules; nothing newer peft releases add) in its metadata.
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

from sdxl_workloads.storage.atomic_write import write_then_rename

DIFFUSERS_WEIGHT_NAME = "pytorch_lora_weights.safetensors"


def peft_lora_state(model: Any) -> dict[str, torch.Tensor]:
    from peft.utils import get_peft_model_state_dict

    return {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in get_peft_model_state_dict(model).items()}


def exported_lora_state(model: Any) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """A model's LoRA weights in PEFT key format with alpha / rank folded into lora_B, and the
    adapter config to record with them (lora_alpha = r, so the scale is 1).

    Folding the scale makes the file mean the same in every loader: older diffusers and other UIs
    ignore adapter metadata and assume alpha = rank. PEFT keys (what diffusers' newer training
    scripts write) are kept because `convert_state_dict_to_diffusers` leaves conv layers in PEFT
    format next to converted attention layers, a mix `load_lora_weights` then half ignores.
    """
    config = model.peft_config["default"]
    scale = float(config.lora_alpha) / float(config.r)
    state = {
        key: value * scale if ".lora_B." in key and scale != 1.0 else value
        for key, value in peft_lora_state(model).items()
    }
    return state, adapter_metadata(config.r, config.target_modules)


# The adapter config keys every supported loader knows. diffusers passes the metadata verbatim to
# peft's `LoraConfig`, and the Neuron image's peft 0.17 rejects the keys newer peft releases add
# (`TypeError: LoraConfig class could not be instantiated`), so the file records only these; the
# Neuron image's diffusers 0.35 also reads `rank_pattern` from it unconditionally (KeyError
# without it), the keys its own `get_peft_kwargs` would have produced.
ADAPTER_METADATA_KEYS = ("r", "lora_alpha", "target_modules", "rank_pattern", "alpha_pattern")


def adapter_metadata(rank: int, target_modules: Any) -> dict[str, Any]:
    """The adapter config to record: rank, alpha = rank (the scale is folded into lora_B) and the
    target modules, sorted (peft keeps them as a set whose order changes from process to process;
    sorted, the same weights always give the same file, whose sha256 keys the compile cache)."""
    targets = sorted(target_modules) if isinstance(target_modules, set | frozenset | list | tuple) else target_modules
    return {"r": int(rank), "lora_alpha": int(rank), "target_modules": targets, "rank_pattern": {},
            "alpha_pattern": {}}


def exported_text_encoder_state(text_encoder: Any) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """A text encoder's LoRA with its keys in the long-standing CLIP layout (`text_model.encoder...`).

    transformers 5 flattened `CLIPTextModel` (no `text_model` wrapper), so its keys lack the
    prefix; transformers 4 (the Neuron image's), kohya tools and the LoRAs on the hub have it.
    diffusers strips the prefix again when it loads into a flattened model, so with it the file
    loads under both library sets.
    """
    state, metadata = exported_lora_state(text_encoder)
    if not hasattr(text_encoder, "text_model"):
        state = {key if key.startswith("text_model.") else f"text_model.{key}": value for key, value in state.items()}
    return state, metadata


def save_diffusers_lora(directory: Path, unet: Any, text_encoder_one: Any | None = None,
                        text_encoder_two: Any | None = None) -> Path:
    """`StableDiffusionXLPipeline.save_lora_weights`, loadable with `pipe.load_lora_weights(directory)`."""
    from diffusers import StableDiffusionXLPipeline

    unet_state, unet_meta = exported_lora_state(unet)
    te_one = exported_text_encoder_state(text_encoder_one) if text_encoder_one is not None else (None, None)
    te_two = exported_text_encoder_state(text_encoder_two) if text_encoder_two is not None else (None, None)
    directory.mkdir(parents=True, exist_ok=True)
    StableDiffusionXLPipeline.save_lora_weights(
        directory,
        unet_lora_layers=unet_state,
        text_encoder_lora_layers=te_one[0],
        text_encoder_2_lora_layers=te_two[0],
        unet_lora_adapter_metadata=unet_meta,
        text_encoder_lora_adapter_metadata=te_one[1],
        text_encoder_2_lora_adapter_metadata=te_two[1],
        weight_name=DIFFUSERS_WEIGHT_NAME,
        safe_serialization=True,
    )
    return canonicalize_safetensors(directory / DIFFUSERS_WEIGHT_NAME)


def canonicalize_safetensors(path: Path) -> Path:
    """Rewrite a safetensors header with sorted keys, so equal weights give equal bytes.

    safetensors writes its metadata map in hash order, which varies from call to call; the file's
    sha256 is the LoRA's identity (it keys compiled models), so the header must not. The tensor
    data and its offsets are unchanged; the header stays padded to 8 bytes as the format requires.
    """
    raw = path.read_bytes()
    length = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8:8 + length])
    text = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    content = len(text).to_bytes(8, "little") + text + raw[8 + length:]
    return write_then_rename(path, lambda temp: temp.write_bytes(content), folder=False)


def kohya_state_dict(lora_state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The saved LoRA in kohya keys, by diffusers' own converters (`lora_unet_*`, `lora_te1_*`,
    `lora_te2_*`; alpha tensors = rank, matching the scale already folded into the weights)."""
    from diffusers.utils import convert_all_state_dict_to_peft, convert_state_dict_to_kohya

    kohya = convert_state_dict_to_kohya(convert_all_state_dict_to_peft(lora_state))
    return {k: v.contiguous() for k, v in kohya.items()}


def save_kohya_lora(diffusers_file: Path, out_file: Path) -> Path:
    from safetensors.torch import load_file, save_file

    save_file(kohya_state_dict(load_file(str(diffusers_file))), str(out_file),
              metadata={"ss_network_module": "networks.lora", "ss_base_model_version": "sdxl_base_v1-0"})
    return canonicalize_safetensors(out_file)


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
