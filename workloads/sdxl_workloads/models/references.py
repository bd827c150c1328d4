"""What a model or input reference names, as a local path (or a hub id) the loaders take.

Every command reads the same references (DESIGN.md, "Artifact store"): a local path or `file://`
URI, `pvc://claim/path`, `s3://bucket/prefix` (mirrored into the cache by the storage backends),
a Hugging Face repo id, and the `builtin:` references to the embedded models and photos.
"""

from __future__ import annotations

import re
from pathlib import Path

from sdxl_contract.uris import scheme_of
from sdxl_workloads.protocol import WorkloadError
from sdxl_workloads.storage.local import local_path
from sdxl_workloads.storage.pvc import pvc_path
from sdxl_workloads.storage.s3 import download_s3

# `builtin:` model references -> (size, seed) of the embedded pipeline.
BUILTIN_MODELS = {"builtin:tiny": ("tiny", 0), "builtin:tiny-mid": ("mid", 0)}
# Pretrained and shipped in the package (builtin/world_pretraining.py), not built from a seed.
WORLD_MODEL = "builtin:world"
BUILTIN_INPUTS = ("builtin:sample-subject", "builtin:world-subject")


# A Hugging Face repo id: "name" or "org/name" (letters, digits, '-', '_', '.').
_HF_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


def resolve_model(ref: str) -> str:
    """What `from_pretrained` should load for `spec.baseModel` (or `spec.vae`).

    builtin:tiny / builtin:tiny-mid -> the embedded pipeline's folder; s3:// -> downloaded to the
    cache; pvc:// -> the mounted folder; an existing local folder -> itself; a Hugging Face repo id
    -> unchanged (the library downloads it).
    """
    ref = ref.strip()
    kind = scheme_of(ref)
    if kind == "builtin":
        if ref == WORLD_MODEL:
            from sdxl_workloads.builtin.world_pretraining import WORLD_MODEL_DIR

            return str(WORLD_MODEL_DIR)
        if ref not in BUILTIN_MODELS:
            raise WorkloadError(
                "InvalidInput",
                f"unknown built-in model {ref!r}; choose one of {', '.join([*BUILTIN_MODELS, WORLD_MODEL])}",
            )
        from sdxl_workloads.builtin.tiny_model import ensure_tiny_model

        size, seed = BUILTIN_MODELS[ref]
        return str(ensure_tiny_model(size, seed=seed))
    if kind in ("s3", "pvc"):
        return str(local_input(ref))
    path = local_path(ref)
    if path.exists():
        return str(path)
    if _HF_ID.match(ref) and not ref.startswith((".", "~")):
        return ref
    raise WorkloadError(
        "InvalidInput",
        f"model {ref!r} not found: it is neither an existing local folder nor a Hugging Face repo id "
        "(org/name); use builtin:tiny, a pvc:// or s3:// URI, or a folder in diffusers layout",
    )


def local_input(uri: str) -> Path:
    """A local file or folder holding the input named by `uri` (s3 is downloaded to the cache)."""
    uri = uri.strip()
    kind = scheme_of(uri)
    if kind == "builtin":
        if uri not in BUILTIN_INPUTS:
            raise WorkloadError("InvalidInput",
                                f"unknown built-in input {uri!r}; choose one of {', '.join(BUILTIN_INPUTS)}")
        if uri == "builtin:world-subject":
            from sdxl_workloads.builtin.world_subject import ensure_world_subject_images

            return ensure_world_subject_images()
        from sdxl_workloads.builtin.sample_images import ensure_sample_images

        return ensure_sample_images()
    if kind == "s3":
        return download_s3(uri)
    path = pvc_path(uri) if kind == "pvc" else local_path(uri)
    if not path.exists():
        raise WorkloadError("InvalidInput", f"{uri}: no such file or folder ({path})")
    return path
