"""The server pods' spec: the ``<dep>-server-spec`` ConfigMap they mount, and its hash in their template.

A change the server reads rolls the pods (the template changes); a change of the scale, of a set's
members or of the adapters file does not.
"""

from __future__ import annotations

import json
from typing import Any

import kubernetes_validate
import pytest

from sdxl_operator.core.settings import OperatorSettings
from sdxl_operator.manifests.inference_deployment import build_inference_deployment
from sdxl_operator.manifests.server_spec import SPEC_HASH, build_server_spec_configmap, server_spec
from sdxl_operator.spec.adapter_set_spec import adapter_set_key, resolve_adapter_set_spec
from sdxl_operator.spec.model_source import ModelSource
from sdxl_operator.spec.resolved_deployment_spec import resolve_deployment_spec

UID = "9a8b7c6d-5e4f-3a2b-1c0d-e9f8a7b6c5d4"
KEY = "0123456789abcdef" * 4
ARTIFACT = f"pvc://sdxl-artifacts/store/compiled/{KEY}"
SOURCE = ModelSource(lora="pvc://sdxl-artifacts/store/finetunes/team-a/alice/lora/pytorch_lora_weights.safetensors",
                     lora_sha256=None, base_model="builtin:tiny", base_revision="main", finetune="alice-v1")
SETTINGS = OperatorSettings(workload_service_account="sdxl-workload")
SERVER_LABELS = {"app.kubernetes.io/managed-by": "sdxl-operator", "app.kubernetes.io/name": "sdxl-server",
                 "app.kubernetes.io/instance": "alice", "sdxl.io/deployment": "alice"}


def owner(**spec: Any) -> dict[str, Any]:
    return {"apiVersion": "sdxl.io/v1alpha1", "kind": "SDXLDeployment",
            "metadata": {"name": "alice", "namespace": "team-a", "uid": UID, "generation": 1},
            "spec": {"fineTune": "alice-v1", "accelerator": "cpu", **spec}}


def resolved(body: dict[str, Any]) -> dict[str, Any]:
    return resolve_deployment_spec(body["spec"], SOURCE, name="alice", namespace="team-a", uid=UID)


def template(body: dict[str, Any]) -> dict[str, Any]:
    deployment = build_inference_deployment(body, resolved(body), key=KEY, artifact=ARTIFACT, settings=SETTINGS)
    return deployment["spec"]["template"]  # type: ignore[no-any-return]


def test_the_server_spec_configmap_whole_manifest() -> None:
    body = owner(replicas=3, autoscaling={"maxReplicas": 4}, loraScale=0.5)
    served = server_spec(resolved(body), body["spec"])
    configmap = build_server_spec_configmap(body, served)
    assert configmap == {
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "alice-server-spec", "namespace": "team-a", "labels": SERVER_LABELS,
                     "ownerReferences": [{"controller": True, "blockOwnerDeletion": True,
                                          "apiVersion": "sdxl.io/v1alpha1", "kind": "SDXLDeployment",
                                          "name": "alice", "uid": UID}]},
        "data": {"spec.json": json.dumps(served, indent=2, sort_keys=True) + "\n"},
    }
    kubernetes_validate.validate(configmap, "1.31", strict=True)
    # The scale is not the server's: it is neither in its spec nor able to change it.
    assert "replicas" not in served and "autoscaling" not in served
    assert served["lora"] == SOURCE.lora and served["loraScale"] == 0.5 and served["accelerator"] == "cpu"


def test_the_pods_mount_it_as_their_spec_file() -> None:
    pod = template(owner())["spec"]
    [container] = pod["containers"]
    assert container["args"][:3] == ["serve", "--spec", "/etc/sdxl/spec.json"]
    assert {"name": "spec", "mountPath": "/etc/sdxl", "readOnly": True} in container["volumeMounts"]
    assert {"name": "spec", "configMap": {"name": "alice-server-spec",
                                          "items": [{"key": "spec.json", "path": "spec.json"}]}} in pod["volumes"]


@pytest.mark.parametrize("change", [
    {"loraScale": 0.5},
    {"server": {"maxBatch": 4}},
    {"server": {"requestTimeoutSeconds": 60}},
    {"auth": {"apiKeySecret": "keys"}},
])
def test_a_change_the_server_reads_rolls_the_pods(change: dict[str, Any]) -> None:
    before, after = template(owner()), template(owner(**change))
    assert before["metadata"]["annotations"][SPEC_HASH] != after["metadata"]["annotations"][SPEC_HASH]


@pytest.mark.parametrize("change", [{"replicas": 5}, {"autoscaling": {"maxReplicas": 6}}])
def test_a_change_of_the_scale_leaves_the_pods_alone(change: dict[str, Any]) -> None:
    assert template(owner())["metadata"] == template(owner(**change))["metadata"]
    assert template(owner()) == template(owner(**change))


def test_a_sets_members_and_adapters_file_leave_the_pods_alone() -> None:
    def set_owner(names: list[str]) -> dict[str, Any]:
        return {**owner(), "spec": {"fineTunes": names, "baseModel": "builtin:tiny", "accelerator": "cpu"}}

    def set_template(body: dict[str, Any]) -> dict[str, Any]:
        spec = resolve_adapter_set_spec(body["spec"], name="alice", namespace="team-a", uid=UID)
        return build_inference_deployment(body, spec, key=adapter_set_key(spec, SETTINGS),  # type: ignore[no-any-return]
                                          artifact="builtin:tiny", settings=SETTINGS)["spec"]["template"]

    one, two = set_owner(["bob"]), set_owner(["bob", "carol"])
    assert set_template(one) == set_template(two)
    # The members are in the spec the server reads (a spec names what it serves), the template does not change.
    served = server_spec(resolve_adapter_set_spec(two["spec"], name="alice", namespace="team-a", uid=UID), two["spec"])
    assert served["fineTunes"] == ["bob", "carol"] and served["adapters"] == {"resident": 8, "maxRank": 64}
    # The adapters file is mounted by ConfigMap name: its content is nowhere in the template.
    assert {"name": "adapters", "configMap": {"name": "alice-adapters"}} in set_template(two)["spec"]["volumes"]
