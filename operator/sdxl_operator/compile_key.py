"""The compile key: a content hash of everything that changes a compiled (Neuron) or prepared model.

The operator's copy of the scheme in CONTRACT.md / ``sdxl_workloads.compile_key`` (the operator may not
import the workloads; a contract test holds the two equal on a table of inputs). The operator uses the
key to name the compile Job, to find a compile another SDXLDeployment already ran, and passes it to
``sdxl-workload compile --key`` so both sides agree on ``<store>/compiled/<key>/``.

key = sha256(canonical_json({base, baseRevision, lora, loraScale, accelerator, shapes, compiler, runtime}))
where shapes and compiler settings count only for Neuron (GPU/CPU pipelines have dynamic shapes) and
runtime is the image reference that compiles and serves the model.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

ACCELERATORS = ("neuron", "nvidia", "cpu")
AUTO_CAST = "matmul"  # optimum-neuron's auto_cast, always this; in the key so a change would recompile
SHAPE_FIELDS = ("batchSize", "height", "width", "numImagesPerPrompt")
DEFAULT_REVISION = "main"
COMPILED_PREFIX = "compiled"
COMPLETE_MARKER = "COMPLETE"


def canonical_json(obj: Any) -> str:
    """One byte-exact JSON text per value: sorted keys, no whitespace."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


def lora_digest(sha256: str | None, uri: str | None) -> str:
    """``sha256:<hex>`` when the LoRA file's digest is known, else ``uri:<uri>``."""
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
    """The object whose canonical JSON is hashed; ``lora`` is a :func:`lora_digest` string."""
    if accelerator not in ACCELERATORS:
        raise ValueError(f"unknown accelerator {accelerator!r}; expected one of {', '.join(ACCELERATORS)}")
    neuron = accelerator == "neuron"
    if neuron and (shapes is None or auto_cast_type is None):
        raise ValueError("a Neuron compile key needs the shapes and the autoCastType")
    return {
        "base": base_model,
        "baseRevision": base_revision or DEFAULT_REVISION,
        "lora": lora,
        # A float, so loraScale 1 and 1.0 give one key.
        "loraScale": float(lora_scale),
        "accelerator": accelerator,
        "shapes": {field: int(shapes[field]) for field in SHAPE_FIELDS} if neuron and shapes is not None else {},
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
    """sha256 hex digest (64 characters) of the canonical key inputs."""
    inputs = key_inputs(
        base_model=base_model, base_revision=base_revision, lora=lora, lora_scale=lora_scale,
        accelerator=accelerator, shapes=shapes, auto_cast_type=auto_cast_type, runtime_id=runtime_id,
    )
    return hashlib.sha256(canonical_json(inputs).encode("utf-8")).hexdigest()


def key8(key: str) -> str:
    """The short form used in child object names."""
    return key[:8]


def compiled_uri(store: str, key: str) -> str:
    """Where ``sdxl-workload compile --store <store> --key <key>`` publishes: ``<store>/compiled/<key>``."""
    return f"{store.rstrip('/')}/{COMPILED_PREFIX}/{key}"
