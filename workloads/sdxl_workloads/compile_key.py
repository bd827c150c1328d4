"""The compile key: a content hash of everything that changes a compiled or prepared model.

The operator computes the same key (its own copy in `sdxl_operator/compile_key.py`, a contract test
holds the two equal) to name the compile Job and to find an existing artifact at
`<store>/compiled/<key>/` before paying for a compile (~40 minutes of a large machine on Neuron).

Pure: no torch, no I/O beyond reading installed package versions.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from importlib import metadata
from typing import Any

ACCELERATORS = ("neuron", "nvidia", "cpu")
# optimum-neuron's compiler setting that we always use; part of the key so a change to it recompiles.
AUTO_CAST = "matmul"
SHAPE_FIELDS = ("batchSize", "height", "width", "numImagesPerPrompt")
DEFAULT_REVISION = "main"


def canonical_json(obj: Any) -> str:
    """One byte-exact JSON text per value: sorted keys, no whitespace."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


def lora_digest(sha256: str | None, uri: str | None) -> str:
    """`sha256:<hex>` when the LoRA file's digest is known, else `uri:<uri>`."""
    if sha256:
        return f"sha256:{sha256.lower()}"
    if uri:
        return f"uri:{uri}"
    raise ValueError("a compile key needs the LoRA's sha256 or its URI")


def key_inputs(
    *,
    base_model: str,
    base_revision: str | None,
    lora: str,
    lora_scale: float,
    accelerator: str,
    shapes: Mapping[str, int] | None,
    auto_cast_type: str | None,
    runtime_id: str,
) -> dict[str, Any]:
    """The object whose canonical JSON is hashed. `lora` is a `lora_digest(...)` string.

    Shapes and compiler settings count only for Neuron: a prepared GPU/CPU pipeline has dynamic shapes.
    The scale is a float so that `loraScale: 1` and `loraScale: 1.0` give one key.
    """
    if accelerator not in ACCELERATORS:
        raise ValueError(f"unknown accelerator {accelerator!r}; expected one of {', '.join(ACCELERATORS)}")
    neuron = accelerator == "neuron"
    if neuron and (shapes is None or auto_cast_type is None):
        raise ValueError("a Neuron compile key needs the shapes and the autoCastType")
    return {
        "base": base_model,
        "baseRevision": base_revision or DEFAULT_REVISION,
        "lora": lora,
        "loraScale": float(lora_scale),
        "accelerator": accelerator,
        "shapes": {f: int(shapes[f]) for f in SHAPE_FIELDS} if neuron and shapes is not None else {},
        "compiler": {"autoCast": AUTO_CAST, "autoCastType": auto_cast_type} if neuron else {},
        "runtime": runtime_id,
    }


def compile_key(
    *,
    base_model: str,
    base_revision: str | None,
    lora: str,
    lora_scale: float,
    accelerator: str,
    shapes: Mapping[str, int] | None,
    auto_cast_type: str | None,
    runtime_id: str,
) -> str:
    """sha256 hex digest (64 chars) of the canonical key inputs."""
    inputs = key_inputs(
        base_model=base_model, base_revision=base_revision, lora=lora, lora_scale=lora_scale,
        accelerator=accelerator, shapes=shapes, auto_cast_type=auto_cast_type, runtime_id=runtime_id,
    )
    return hashlib.sha256(canonical_json(inputs).encode()).hexdigest()


def key8(key: str) -> str:
    """The short form used in child object names."""
    return key[:8]


def _version(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def default_runtime_id(accelerator: str) -> str:
    """`diffusers=<v>,torch=<v>[,optimum-neuron=<v>]` from the installed packages.

    Used when the operator does not pass `--runtime-id` (it passes the image reference). optimum-neuron
    counts only for Neuron compiles: it plays no part in preparing a GPU/CPU pipeline.
    """
    parts = [f"diffusers={_version('diffusers') or 'none'}", f"torch={_version('torch') or 'none'}"]
    if accelerator == "neuron":
        parts.append(f"optimum-neuron={_version('optimum-neuron') or 'none'}")
    return ",".join(parts)
