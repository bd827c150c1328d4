"""`sdxl-workload serve --spec`: what the server takes from the SDXLDeployment spec and what from flags."""

from __future__ import annotations

import pytest

from sdxl_workloads import cli
from sdxl_workloads.protocol import WorkloadError
from sdxl_workloads.server import serve_command
from sdxl_workloads.server.diffusers_backend import DiffusersBackend
from sdxl_workloads.spec.deployment_spec import load_deployment_spec

# These modules run in the Neuron image too (make test-compat).
pytestmark = pytest.mark.compat

LORA = "s3://loras/alice/pytorch_lora_weights.safetensors"


def test_without_model_the_spec_base_model_is_served_with_its_lora_at_its_scale() -> None:
    spec = load_deployment_spec({"lora": LORA, "baseModel": "builtin:tiny", "accelerator": "cpu", "loraScale": 0.7})
    args = cli.parse_args(["serve", "--spec", "spec.json"])
    backend = serve_command.build_backend(spec, args)
    assert isinstance(backend, DiffusersBackend)
    assert (backend.model, backend.lora, backend.lora_scale, backend.device) == ("builtin:tiny", LORA, 0.7, "cpu")


def test_a_compiled_model_is_served_alone_its_lora_fused_in_it() -> None:
    spec = load_deployment_spec({"lora": LORA, "baseModel": "builtin:tiny", "accelerator": "nvidia"})
    args = cli.parse_args(["serve", "--spec", "spec.json", "--model", "/store/compiled/k"])
    backend = serve_command.build_backend(spec, args)
    assert isinstance(backend, DiffusersBackend)
    assert (backend.model, backend.lora, backend.device) == ("/store/compiled/k", None, "cuda")


def test_the_spec_sets_batching_queue_and_timeout() -> None:
    spec = load_deployment_spec({"fineTune": "alice", "accelerator": "cpu",
                                 "server": {"maxBatch": 4, "queueSize": 16, "requestTimeoutSeconds": 60}})
    settings = serve_command.build_settings(spec, cli.parse_args(["serve", "--spec", "spec.json", "--max-steps", "50"]))
    assert (settings.max_batch, settings.queue_size, settings.request_timeout) == (4, 16, 60.0)
    assert settings.max_steps == 50 and settings.api_key is None


def test_the_flags_the_spec_now_holds_are_gone() -> None:
    for flag in ("--accelerator", "--lora", "--lora-scale", "--max-batch", "--queue-size", "--request-timeout",
                 "--resident-adapters", "--max-adapter-rank"):
        with pytest.raises(SystemExit):
            cli.parse_args(["serve", "--spec", "spec.json", flag, "1"])
    for flag in ("--lora", "--lora-sha256", "--base-model"):
        with pytest.raises(SystemExit):
            cli.parse_args(["compile", "--spec", "spec.json", "--store", "s", flag, "x"])


def test_a_spec_with_auth_needs_the_mounted_key_file() -> None:
    spec = load_deployment_spec({"fineTune": "alice", "accelerator": "cpu", "auth": {"apiKeySecret": "keys"}})
    with pytest.raises(WorkloadError, match=r"spec\.auth: .*--api-key-file"):
        serve_command.build_settings(spec, cli.parse_args(["serve", "--spec", "spec.json"]))
