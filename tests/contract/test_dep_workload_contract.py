"""The operator's compile Job, its spec ConfigMap and the inference Deployment speak the workloads' language.

For every SDXLDeployment example (as a fine-tune deployment and as a direct-LoRA one): the compile
Job's and the Deployment's command lines parse with ``sdxl_workloads.cli.parse_args``; the compile
ConfigMap's and the server spec ConfigMap's spec.json load with the workloads' spec loader and
deployment spec and mean the same model and settings; the key the operator passes is the key the compile
command would compute from the same file and flags; the artifact the Deployment serves is where the
compile publishes. A set of fine-tunes' server spec loads with the serve workload too.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import pytest
import yaml

from sdxl_contract.compiled_artifacts import compiled_uri
from sdxl_contract.workload_protocol import SPEC_PATH
from sdxl_operator.core.settings import OperatorSettings
from sdxl_operator.handlers.deployment_handlers import key_of
from sdxl_operator.manifests.compile_job import build_compile_configmap, build_compile_job
from sdxl_operator.manifests.inference_deployment import build_inference_deployment
from sdxl_operator.manifests.server_spec import build_server_spec_configmap, server_spec
from sdxl_operator.spec.adapter_set_spec import adapter_set_key, resolve_adapter_set_spec
from sdxl_operator.spec.deployment_validation import validate_deployment_spec
from sdxl_operator.spec.model_source import ModelSource, model_source
from sdxl_operator.spec.resolved_deployment_spec import resolve_deployment_spec
from sdxl_workloads import cli
from sdxl_workloads.compile import compile_command
from sdxl_workloads.server import serve_command
from sdxl_workloads.spec import spec_loading
from sdxl_workloads.spec.deployment_spec import DeploymentSpec

REPO = Path(__file__).resolve().parents[2]
# The examples that deploy one fine-tune: a set of them (spec.fineTunes) has no single LoRA to compile.
EXAMPLES = [path for path in sorted((REPO / "crds" / "examples").glob("deployment*.yaml"))
            if "fineTune" in yaml.safe_load(path.read_text())["spec"]]
SHA = "d97320424be7ffac2de421d8eaea6957627f1aa571e1d9bc1cb687c4a21ba1b4"
SETTINGS = OperatorSettings(artifact_store="s3://sdxl-artifacts/store", image_neuron="reg/neuron@sha256:" + "a" * 64)
FINETUNE = {"spec": {"baseModel": "builtin:tiny", "baseModelRevision": "main"},
            "status": {"phase": "Succeeded", "artifacts": {"lora": "s3://loras/ft/lora/pytorch_lora_weights.safetensors",
                                                           "loraSha256": SHA}}}


def _variants() -> list[tuple[str, dict[str, Any]]]:
    found = []
    for example in EXAMPLES:
        owner = yaml.safe_load(example.read_text())
        # As the API server stores it: the namespace of `kubectl apply -n`, and a uid.
        owner["metadata"].update(namespace="team-a", uid="6c1f0a52-9b7e-4d1c-8f1e-2a3b4c5d6e7f")
        found.append((example.stem, owner))
        direct = yaml.safe_load(example.read_text())
        direct["metadata"].update(namespace="team-a", uid=owner["metadata"]["uid"])
        direct["spec"].pop("fineTune")
        direct["spec"].update({"lora": "pvc://loras/alice.safetensors", "baseModel": "stabilityai/sdxl-custom"})
        found.append((f"{example.stem}-direct", direct))
    return found


VARIANTS = _variants()


def _children(owner: dict[str, Any]) -> tuple[dict[str, Any], str, dict[str, Any], dict[str, Any], dict[str, Any]]:
    assert validate_deployment_spec(owner["spec"]) == []
    source = model_source(owner["spec"], FINETUNE)
    assert isinstance(source, ModelSource)
    meta = owner["metadata"]
    resolved = resolve_deployment_spec(owner["spec"], source, name=meta["name"], namespace=meta["namespace"],
                                       uid=meta["uid"])
    key = key_of(resolved, SETTINGS)
    artifact = compiled_uri(SETTINGS.artifact_store, key)
    return (resolved, key, build_compile_configmap(owner, resolved, key),
            build_compile_job(owner, resolved, key, SETTINGS),
            build_inference_deployment(owner, resolved, key=key, artifact=artifact, settings=SETTINGS))


def _container(workload: dict[str, Any]) -> dict[str, Any]:
    containers = workload["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    assert containers[0]["command"] == ["sdxl-workload"]
    return containers[0]  # type: ignore[no-any-return]


@pytest.mark.parametrize("name, owner", VARIANTS, ids=[name for name, _ in VARIANTS])
def test_compile_job_and_configmap_load_with_the_compile_workload(name: str, owner: dict[str, Any],
                                                                  tmp_path: Path) -> None:
    resolved, key, configmap, job, _ = _children(owner)
    args = cli.parse_args(_container(job)["args"])
    assert args.command == "compile" and args.spec == SPEC_PATH
    assert args.key == key and args.store == SETTINGS.artifact_store

    spec_file = tmp_path / "spec.json"
    spec_file.write_text(configmap["data"]["spec.json"])
    loaded = DeploymentSpec.from_dict(spec_loading.load_manifest(spec_file))
    request = compile_command.resolve_request(loaded, argparse.Namespace(**{**vars(args), "spec": str(spec_file)}))
    assert request.lora_uri == resolved["lora"] and request.base_model == resolved["baseModel"]
    assert request.accelerator == resolved["accelerator"] and request.lora_scale == resolved["loraScale"]
    # The key the operator passes is the one the workload computes from the same inputs.
    assert compile_command.key_for(request, request.lora_sha256) == key
    if loaded.accelerator == "neuron":
        assert loaded.neuron.shapes() == {k: resolved["neuron"][k] for k in loaded.neuron.shapes()}


@pytest.mark.parametrize("name, owner", VARIANTS, ids=[name for name, _ in VARIANTS])
def test_deployment_command_and_server_spec_load_with_the_serve_workload(name: str, owner: dict[str, Any],
                                                                         tmp_path: Path) -> None:
    resolved, key, _, _, deployment = _children(owner)
    container = _container(deployment)
    args = cli.parse_args(container["args"])
    assert args.command == "serve" and args.spec == SPEC_PATH
    assert args.model == compiled_uri(SETTINGS.artifact_store, key)
    assert args.port == container["ports"][0]["containerPort"]
    served = _mounted_server_spec(owner, resolved, deployment, tmp_path)
    spec = serve_command.load_spec(str(served))
    if resolved.get("auth"):
        mount = next(m for m in container["volumeMounts"] if m["name"] == "api-key")
        assert args.api_key_file == f"{mount['mountPath']}/{resolved['auth']['apiKeySecretKey']}"
        key_file = tmp_path / "api-key"
        key_file.write_text("k3y\n")
        args.api_key_file = str(key_file)
    else:
        assert args.api_key_file is None
    settings = serve_command.build_settings(spec, args)
    assert spec.accelerator == resolved["accelerator"]
    assert (settings.max_batch, settings.queue_size, settings.request_timeout) == (
        resolved["server"]["maxBatch"], resolved["server"]["queueSize"], resolved["server"]["requestTimeoutSeconds"])
    assert (settings.api_key is not None) is bool(resolved.get("auth"))
    # The LoRA is fused into the compiled/prepared model: the server applies none on top.
    assert serve_command.served_model(spec, args) == (args.model, None)


SETS = [path for path in sorted((REPO / "crds" / "examples").glob("deployment*.yaml"))
        if {"fineTunes", "fineTuneSelector"} & set(yaml.safe_load(path.read_text())["spec"])]


@pytest.mark.parametrize("example", SETS, ids=[path.stem for path in SETS])
def test_a_sets_server_spec_loads_with_the_serve_workload(example: Path, tmp_path: Path) -> None:
    owner = yaml.safe_load(example.read_text())
    owner["metadata"].update(namespace="team-a", uid="6c1f0a52-9b7e-4d1c-8f1e-2a3b4c5d6e7f")
    meta = owner["metadata"]
    resolved = resolve_adapter_set_spec(owner["spec"], name=meta["name"], namespace=meta["namespace"],
                                        uid=meta["uid"])
    deployment = build_inference_deployment(owner, resolved, key=adapter_set_key(resolved, SETTINGS),
                                            artifact=str(resolved["baseModel"]), settings=SETTINGS)
    args = cli.parse_args(_container(deployment)["args"])
    spec = serve_command.load_spec(str(_mounted_server_spec(owner, resolved, deployment, tmp_path)))
    assert args.adapters and spec.adapters is not None
    assert (spec.adapters.resident, spec.adapters.max_rank) == (resolved["adapters"]["resident"],
                                                                 resolved["adapters"]["maxRank"])
    assert serve_command.served_model(spec, args) == (resolved["baseModel"], None)


def _mounted_server_spec(owner: dict[str, Any], resolved: dict[str, Any], deployment: dict[str, Any],
                         tmp_path: Path) -> Path:
    """The spec.json the server pods of ``deployment`` read: their ConfigMap volume, at SPEC_PATH."""
    pod = deployment["spec"]["template"]["spec"]
    volume = next(v for v in pod["volumes"] if "configMap" in v and
                  any(m["name"] == v["name"] and m["mountPath"] == str(Path(SPEC_PATH).parent)
                      for m in pod["containers"][0]["volumeMounts"]))
    configmap = build_server_spec_configmap(owner, server_spec(resolved, owner["spec"]))
    assert volume["configMap"]["name"] == configmap["metadata"]["name"]
    spec_file = tmp_path / "spec.json"
    spec_file.write_text(configmap["data"][Path(SPEC_PATH).name])
    return spec_file
