"""The compile key: a content hash of everything that changes a compiled (Neuron) or prepared model.

The operator uses the key to name the compile Job and to find a compile another SDXLDeployment already
ran, and passes it to ``sdxl-workload compile --key``; the workload computes it itself when run alone.
Both publish and look under ``<store>/compiled/<key>/`` (:mod:`sdxl_contract.compiled_artifacts`).

key = sha256(canonical_json({base, baseRevision, lora, loraScale, accelerator, shapes, compiler, runtime}))
where shapes and compiler settings count only for an accelerator that compiles for fixed shapes
(Neuron; a prepared GPU/CPU pipeline has dynamic shapes) and runtime is the image reference that
compiles and serves the model (or, run alone, the installed library versions).

Pure: no I/O, standard library only.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from sdxl_contract.accelerators import profile_of
from sdxl_contract.digests import normalise_sha256

SHAPE_FIELDS = ("batchSize", "height", "width", "numImagesPerPrompt")
DEFAULT_REVISION = "main"


def canonical_json(obj: Any) -> str:
    """One byte-exact JSON text per value: sorted keys, no whitespace."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


def lora_digest(sha256: str | None, uri: str | None) -> str:
    """``sha256:<hex>`` when the LoRA file's digest is known, else ``uri:<uri>``."""
    if sha256:
        return f"sha256:{normalise_sha256(sha256)}"
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
    profile = profile_of(accelerator)
    fixed = profile.compiles_for_fixed_shapes
    if fixed and (shapes is None or auto_cast_type is None):
        raise ValueError("a Neuron compile key needs the shapes and the autoCastType")
    return {
        "base": base_model,
        "baseRevision": base_revision or DEFAULT_REVISION,
        "lora": lora,
        # A float, so loraScale 1 and 1.0 give one key.
        "loraScale": float(lora_scale),
        "accelerator": accelerator,
        "shapes": {field: int(shapes[field]) for field in SHAPE_FIELDS} if fixed and shapes is not None else {},
        "compiler": {"autoCast": profile.auto_cast, "autoCastType": auto_cast_type} if fixed else {},
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
    return key_of_inputs(key_inputs(
        base_model=base_model, base_revision=base_revision, lora=lora, lora_scale=lora_scale,
        accelerator=accelerator, shapes=shapes, auto_cast_type=auto_cast_type, runtime_id=runtime_id,
    ))


def key_of_inputs(inputs: Mapping[str, Any]) -> str:
    """The key of a :func:`key_inputs` object (as recorded in a compiled model's ``compile_info.json``)."""
    return hashlib.sha256(canonical_json(inputs).encode("utf-8")).hexdigest()


def is_compile_key(value: object) -> bool:
    """True for what :func:`key_of_inputs` returns: 64 lowercase hexadecimal characters."""
    return isinstance(value, str) and len(value) == 64 and all(c in "0123456789abcdef" for c in value)


def key8(key: str) -> str:
    """The short form used in child object names."""
    return key[:8]
