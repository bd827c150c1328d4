"""The operator's compile key equals the compile workload's for the same inputs.

The operator names compile Jobs by the key and passes it with ``--key``; the workload publishes to
``<store>/compiled/<key>/`` and computes the key itself when run by hand. If the two schemes drifted, a
by-hand compile would never be found by the operator (and vice versa), so both are run on one table.
"""

from __future__ import annotations

from typing import Any

import pytest

from sdxl_operator import compile_key as operator_keys
from sdxl_workloads import compile_key as workload_keys

SHA = "0123456789abcdef" * 4
SHAPES = {"batchSize": 1, "height": 1024, "width": 1024, "numImagesPerPrompt": 1}
BASE: dict[str, Any] = {
    "base_model": "stabilityai/stable-diffusion-xl-base-1.0", "base_revision": None,
    "lora": f"sha256:{SHA}", "lora_scale": 1.0, "accelerator": "neuron", "shapes": SHAPES,
    "auto_cast_type": "bf16", "runtime_id": "ghcr.io/sdxl-operator/sdxl-workloads-neuron:0.1.0",
}
CASES: dict[str, dict[str, Any]] = {
    "neuron defaults": {},
    "integer scale": {"lora_scale": 1},
    "scale 0.9": {"lora_scale": 0.9},
    "revision": {"base_revision": "v1.0"},
    "uri digest": {"lora": "uri:s3://b/lora/pytorch_lora_weights.safetensors"},
    "shapes 768x1344 batch 2": {"shapes": {**SHAPES, "height": 768, "width": 1344, "batchSize": 2}},
    "fp16": {"auto_cast_type": "fp16"},
    "nvidia": {"accelerator": "nvidia", "shapes": None, "auto_cast_type": None,
               "runtime_id": "ghcr.io/sdxl-operator/sdxl-workloads-gpu:0.1.0"},
    "cpu tiny": {"accelerator": "cpu", "shapes": None, "auto_cast_type": None, "base_model": "builtin:tiny"},
    "nvidia ignores shapes": {"accelerator": "nvidia"},
    "unicode base path": {"base_model": "pvc://models/sdxl-ü", "accelerator": "cpu"},
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_operator_and_workload_compute_the_same_key(case: str) -> None:
    inputs = {**BASE, **CASES[case]}
    ours = operator_keys.compile_key(**inputs)
    theirs = workload_keys.compile_key(**inputs)
    assert ours == theirs
    assert operator_keys.key_inputs(**inputs) == workload_keys.key_inputs(**inputs)
    assert operator_keys.key8(ours) == workload_keys.key8(theirs)


def test_every_input_changes_the_key_but_scale_type_and_gpu_shapes_do_not() -> None:
    distinct = {name: operator_keys.compile_key(**{**BASE, **override}) for name, override in CASES.items()}
    assert distinct["integer scale"] == distinct["neuron defaults"]
    gpu = {**BASE, "accelerator": "nvidia"}
    assert operator_keys.compile_key(**gpu) == operator_keys.compile_key(**{**gpu, "shapes": None,
                                                                            "auto_cast_type": None})
    del distinct["integer scale"], distinct["nvidia ignores shapes"]
    assert len(set(distinct.values())) == len(distinct)


@pytest.mark.parametrize("sha, uri", [(SHA, None), (SHA.upper(), "s3://b/x"), (None, "s3://b/x")])
def test_lora_digest_agrees(sha: str | None, uri: str | None) -> None:
    assert operator_keys.lora_digest(sha, uri) == workload_keys.lora_digest(sha, uri)


def test_compiled_uri_is_where_the_workload_publishes() -> None:
    key = operator_keys.compile_key(**BASE)
    from sdxl_workloads.compile_command import COMPILED_PREFIX, COMPLETE_MARKER

    assert operator_keys.COMPILED_PREFIX == COMPILED_PREFIX and operator_keys.COMPLETE_MARKER == COMPLETE_MARKER
    assert operator_keys.compiled_uri("s3://bucket/store/", key) == f"s3://bucket/store/compiled/{key}"
    assert operator_keys.compiled_uri("pvc://sdxl-artifacts/store", key) == f"pvc://sdxl-artifacts/store/compiled/{key}"
