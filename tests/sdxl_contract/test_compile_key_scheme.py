"""The compile key: stable for the same inputs, different when anything that changes the artifact changes."""

from __future__ import annotations

import hashlib
import json
import sys
from typing import Any

import pytest

from sdxl_contract import compile_key as keys

# The contract runs in the Neuron image too (make test-compat).
pytestmark = pytest.mark.compat

NEURON: dict[str, Any] = {
    "base_model": "stabilityai/stable-diffusion-xl-base-1.0",
    "base_revision": None,
    "lora": "sha256:" + "ab" * 32,
    "lora_scale": 1.0,
    "accelerator": "neuron",
    "shapes": {"batchSize": 1, "height": 1024, "width": 1024, "numImagesPerPrompt": 1},
    "auto_cast_type": "bf16",
    "runtime_id": "registry.example/sdxl-neuron:1.0",
}


def test_key_is_the_sha256_of_the_canonical_inputs_from_the_contract() -> None:
    # Written out by hand from the contract, independently of key_inputs().
    canonical = (
        '{"accelerator":"neuron","base":"stabilityai/stable-diffusion-xl-base-1.0","baseRevision":"main",'
        '"compiler":{"autoCast":"matmul","autoCastType":"bf16"},"lora":"sha256:' + "ab" * 32 + '",'
        '"loraScale":1.0,"runtime":"registry.example/sdxl-neuron:1.0",'
        '"shapes":{"batchSize":1,"height":1024,"numImagesPerPrompt":1,"width":1024}}'
    )
    assert keys.canonical_json(keys.key_inputs(**NEURON)) == canonical
    key = keys.compile_key(**NEURON)
    assert key == hashlib.sha256(canonical.encode()).hexdigest()
    assert len(key) == 64 and keys.key8(key) == key[:8]


def test_key_is_stable() -> None:
    assert keys.compile_key(**NEURON) == keys.compile_key(**dict(NEURON))
    # dict order of the shapes does not matter
    reordered = {**NEURON, "shapes": dict(reversed(list(NEURON["shapes"].items())))}
    assert keys.compile_key(**reordered) == keys.compile_key(**NEURON)


@pytest.mark.parametrize(("field", "value"), [
    ("base_model", "my-org/my-sdxl"),
    ("base_revision", "462165984030d82259a11f4367a4eed129e94a7b"),
    ("lora", "sha256:" + "cd" * 32),
    ("lora", "uri:s3://bucket/lora.safetensors"),
    ("lora_scale", 0.8),
    ("accelerator", "nvidia"),
    ("accelerator", "cpu"),
    ("shapes", {"batchSize": 2, "height": 1024, "width": 1024, "numImagesPerPrompt": 1}),
    ("shapes", {"batchSize": 1, "height": 768, "width": 1024, "numImagesPerPrompt": 1}),
    ("shapes", {"batchSize": 1, "height": 1024, "width": 768, "numImagesPerPrompt": 1}),
    ("shapes", {"batchSize": 1, "height": 1024, "width": 1024, "numImagesPerPrompt": 2}),
    ("auto_cast_type", "fp16"),
    ("runtime_id", "registry.example/sdxl-neuron:1.1"),
])
def test_any_input_change_changes_the_key(field: str, value: Any) -> None:
    assert keys.compile_key(**{**NEURON, field: value}) != keys.compile_key(**NEURON)


def test_revision_defaults_to_main() -> None:
    assert keys.compile_key(**{**NEURON, "base_revision": "main"}) == keys.compile_key(**NEURON)


def test_integer_and_float_scales_give_one_key() -> None:
    """YAML `loraScale: 1` and `1.0` are the same setting."""
    assert keys.compile_key(**{**NEURON, "lora_scale": 1}) == keys.compile_key(**NEURON)


def test_shapes_and_compiler_count_only_for_neuron() -> None:
    gpu = {**NEURON, "accelerator": "nvidia"}
    other_shapes = {**gpu, "shapes": {"batchSize": 4, "height": 512, "width": 512, "numImagesPerPrompt": 2},
                    "auto_cast_type": "fp16"}
    assert keys.compile_key(**gpu) == keys.compile_key(**other_shapes)
    assert keys.compile_key(**gpu) == keys.compile_key(**{**gpu, "shapes": None, "auto_cast_type": None})
    inputs = keys.key_inputs(**gpu)
    assert inputs["shapes"] == {} and inputs["compiler"] == {}


def test_neuron_key_needs_shapes_and_unknown_accelerators_are_refused() -> None:
    with pytest.raises(ValueError, match="shapes"):
        keys.compile_key(**{**NEURON, "shapes": None})
    with pytest.raises(ValueError, match="accelerator"):
        keys.compile_key(**{**NEURON, "accelerator": "tpu"})


def test_lora_digest_prefers_the_file_digest() -> None:
    assert keys.lora_digest("AB" * 32, "s3://b/l.safetensors") == "sha256:" + "ab" * 32
    assert keys.lora_digest(None, "s3://b/l.safetensors") == "uri:s3://b/l.safetensors"
    with pytest.raises(ValueError):
        keys.lora_digest(None, None)


def test_canonical_json_is_sorted_and_compact() -> None:
    text = keys.canonical_json({"b": 1, "a": {"d": [1, 2], "c": "x"}})
    assert text == '{"a":{"c":"x","d":[1,2]},"b":1}'
    assert json.loads(text) == {"b": 1, "a": {"d": [1, 2], "c": "x"}}


def test_the_key_module_imports_no_torch() -> None:
    """The scheme is pure: computing a key must not pull in torch (the operator may not import it)."""
    import subprocess

    code = ("import sys; import sdxl_contract.compile_key as k; "
            "k.compile_key(base_model='b', base_revision=None, lora='uri:x', lora_scale=1, accelerator='cpu', "
            "shapes=None, auto_cast_type=None, runtime_id='r'); print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_the_key_of_recorded_inputs_is_the_key() -> None:
    """A compiled model's compile_info.json records the inputs; hashing them again gives its key."""
    recorded = json.loads(json.dumps(keys.key_inputs(**NEURON)))
    assert keys.key_of_inputs(recorded) == keys.compile_key(**NEURON)
