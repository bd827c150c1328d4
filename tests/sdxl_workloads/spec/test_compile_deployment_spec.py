"""The workloads' view of SDXLDeployment.spec: the contract's defaults, and clear InvalidInput errors."""

from __future__ import annotations

from typing import Any

import pytest

from sdxl_workloads.protocol import WorkloadError
from sdxl_workloads.spec.deployment_spec import NeuronSettings, load_deployment_spec

# These modules run in the Neuron image too (make test-compat).
pytestmark = pytest.mark.compat


def test_defaults_follow_the_contract() -> None:
    spec = load_deployment_spec({"fineTune": "alice-v1"})
    assert spec.accelerator == "neuron"
    assert spec.lora_scale == 1.0
    assert spec.neuron == NeuronSettings(batch_size=1, height=1024, width=1024, num_images_per_prompt=1,
                                         auto_cast_type="bf16", instance_type="inf2.8xlarge")
    assert spec.neuron.shapes() == {"batchSize": 1, "height": 1024, "width": 1024, "numImagesPerPrompt": 1}
    assert spec.base_model is None and spec.lora is None and spec.lora_sha256 is None


def test_full_spec_and_ignored_operator_fields() -> None:
    spec = load_deployment_spec({
        "lora": "s3://bucket/alice/pytorch_lora_weights.safetensors",
        "loraSha256": "ab" * 32,
        "baseModel": "stabilityai/stable-diffusion-xl-base-1.0",
        "accelerator": "neuron",
        "neuron": {"batchSize": 2, "height": 768, "width": 1344, "numImagesPerPrompt": 2,
                   "autoCastType": "fp16", "instanceType": "inf2.24xlarge"},
        "loraScale": 1,
        # owned by the operator; the workloads accept and ignore them
        "replicas": 3, "server": {"maxBatch": 4}, "auth": {"apiKeySecret": "k"},
        "metadata": {"name": "alice", "namespace": "ns", "uid": "u"},
    })
    assert spec.lora_sha256 == "ab" * 32
    assert spec.neuron.shapes() == {"batchSize": 2, "height": 768, "width": 1344, "numImagesPerPrompt": 2}
    assert spec.neuron.auto_cast_type == "fp16" and spec.neuron.instance_type == "inf2.24xlarge"
    assert spec.lora_scale == 1.0 and isinstance(spec.lora_scale, float)


def test_neuron_settings_are_filled_in_for_neuron_only() -> None:
    """As in the operator's resolved spec: the CRD's neuron defaults on Neuron, none elsewhere."""
    spec = load_deployment_spec({"lora": "x", "baseModel": "builtin:tiny", "accelerator": "cpu"})
    assert spec.accelerator == "cpu" and spec.neuron is None
    assert spec.neuron_settings == load_deployment_spec({"fineTune": "alice-v1"}).neuron


@pytest.mark.parametrize(("spec", "field", "words"), [
    ({"accelerator": "tpu"}, "spec.accelerator", "neuron, nvidia, cpu"),
    ({"neuron": {"height": 1020}}, "spec.neuron.height", "multiple of 8"),
    ({"neuron": {"width": 1001}}, "spec.neuron.width", "multiple of 8"),
    ({"neuron": {"height": 128}}, "spec.neuron.height", "between 256 and 2048"),
    ({"neuron": {"width": 4096}}, "spec.neuron.width", "between 256 and 2048"),
    ({"neuron": {"batchSize": 0}}, "spec.neuron.batchSize", "between 1 and 8"),
    ({"neuron": {"batchSize": "2"}}, "spec.neuron.batchSize", "integer"),
    ({"neuron": {"batchSize": True}}, "spec.neuron.batchSize", "integer"),
    ({"neuron": {"numImagesPerPrompt": 9}}, "spec.neuron.numImagesPerPrompt", "between 1 and 8"),
    ({"neuron": {"autoCastType": "int8"}}, "spec.neuron.autoCastType", "bf16, fp16, tf32"),
    ({"neuron": {"instanceType": "g5.xlarge"}}, "spec.neuron.instanceType", "Inferentia2"),
    ({"neuron": "big"}, "spec.neuron", "mapping"),
    ({"accelerator": "nvidia", "neuron": {"height": 768}}, "spec.neuron", "only allowed with spec.accelerator: neuron"),
    ({"accelerator": "cpu", "neuron": {"autoCastType": "fp16"}}, "spec.neuron", "only allowed"),
    ({"loraScale": 2.5}, "spec.loraScale", "between 0 and 2"),
    ({"loraScale": -0.1}, "spec.loraScale", "between 0 and 2"),
    ({"loraScale": "strong"}, "spec.loraScale", "number"),
    ({"lora": "s3://bucket/l", "baseModel": "builtin:tiny", "loraSha256": "abc"}, "spec.loraSha256",
     "64 lowercase hexadecimal"),
    ({"lora": "s3://bucket/l", "baseModel": "builtin:tiny", "loraSha256": "AB" * 32}, "spec.loraSha256",
     "64 lowercase hexadecimal"),
    ({"fineTune": "a", "lora": "b"}, "spec", "set exactly one of spec.fineTune"),
    ({"lora": "s3://bucket/l"}, "spec.baseModel", "required with spec.lora"),
    ({"baseModel": ""}, "spec.baseModel", "must not be empty"),
    ({"auth": {"apiKeySecret": "key", "apiKeySecretKey": ".."}}, "spec.auth.apiKeySecretKey",
     "not starting with '..'"),
])
def test_invalid_specs_name_the_field(spec: dict[str, Any], field: str, words: str) -> None:
    if not {"fineTune", "lora"} & spec.keys():
        spec = {"fineTune": "alice-v1", **spec}  # a valid model source, so the case's own error comes first
    with pytest.raises(WorkloadError) as caught:
        load_deployment_spec(spec)
    assert caught.value.reason == "InvalidInput"
    assert caught.value.message.startswith(field + ":")
    assert words in caught.value.message


def test_spec_must_be_a_mapping() -> None:
    with pytest.raises(WorkloadError, match="mapping"):
        load_deployment_spec(["not", "a", "spec"])  # type: ignore[arg-type]
