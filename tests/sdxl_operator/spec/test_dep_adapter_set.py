"""An SDXLDeployment serving a set of fine-tunes: which fine-tunes it serves, its spec checks, the adapters
ConfigMap, and the server Deployment built for it (args, mount, and a template hash the set never changes)."""

from __future__ import annotations

import datetime
import json
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from sdxl_operator.core.settings import OperatorSettings
from sdxl_operator.manifests.adapters_configmap import build_adapters_configmap
from sdxl_operator.manifests.inference_deployment import TEMPLATE_HASH, build_inference_deployment
from sdxl_operator.manifests.server_spec import server_spec
from sdxl_operator.spec import adapter_set_spec
from sdxl_operator.spec.adapter_set import (
    Adapter,
    AdapterSet,
    Excluded,
    covers,
    is_adapter_set_spec,
    needs_refresh,
    resolve_adapter_set,
)
from sdxl_operator.spec.adapter_set_spec import (
    NEURON_MESSAGE,
    NEURON_RULE_MESSAGE,
    adapter_set_key,
    adapter_set_spec_errors,
    resolve_adapter_set_spec,
)
from sdxl_operator.spec.label_selector import selector_matches
from sdxl_operator.status.adapter_set_status import with_adapter_set_status

REPO_ROOT = Path(__file__).resolve().parents[3]
NS = "team-c"
UID = "9a8b7c6d-5e4f-3a2b-1c0d-e9f8a7b6c5d4"
STORE = "pvc://sdxl-artifacts/store"
SETTINGS = OperatorSettings(image_nvidia="registry.example/sdxl-gpu:1.2.3", image_cpu="registry.example/sdxl-cpu:1.2.3")
OWNER = {"apiVersion": "sdxl.io/v1alpha1", "kind": "SDXLDeployment",
         "metadata": {"name": "portraits", "namespace": NS, "uid": UID}}
SERVER_LABELS = {"app.kubernetes.io/managed-by": "sdxl-operator", "app.kubernetes.io/name": "sdxl-server",
                 "app.kubernetes.io/instance": "portraits", "sdxl.io/deployment": "portraits"}


def lora_of(name: str, namespace: str = NS) -> str:
    return f"{STORE}/finetunes/{namespace}/{name}/1a2b3c4d/lora/pytorch_lora_weights.safetensors"


def finetune(name: str, phase: str | None = "Succeeded", *, namespace: str = NS, labels: dict[str, str] | None = None,
             base: str = "builtin:tiny", rank: int = 4, lora: bool = True) -> dict[str, Any]:
    status: dict[str, Any] = {}
    if phase:
        status["phase"] = phase
    if phase == "Succeeded" and lora:
        status["artifacts"] = {"lora": lora_of(name, namespace)}
    if phase == "Failed":
        status["failure"] = {"reason": "OutOfMemory", "message": "the trainer ran out of memory"}
    return {"metadata": {"name": name, "namespace": namespace, "labels": labels or {}},
            "spec": {"baseModel": base, "training": {"rank": rank}}, "status": status}


def set_spec(**fields: Any) -> dict[str, Any]:
    return {"baseModel": "builtin:tiny", "accelerator": "cpu", **fields}


TEAM = {"team": "portraits"}
FINETUNES = [
    finetune("alice", labels={**TEAM, "tier": "gold"}),
    finetune("bob", labels=TEAM),
    finetune("carol", "Training", labels=TEAM),
    finetune("dave", "Failed", labels=TEAM),
    finetune("erin", labels=TEAM, base="stabilityai/stable-diffusion-xl-base-1.0"),
    finetune("frank", labels={"team": "landscapes"}),
    finetune("alice", namespace="team-d", labels=TEAM),  # same name and labels, another tenant
    finetune("gina", labels=TEAM, rank=128),
    finetune("hank", None, labels=TEAM),
    finetune("ivan", labels=TEAM, lora=False),
]


def names(entries: tuple[Adapter, ...] | tuple[Excluded, ...]) -> list[str]:
    return [entry.name for entry in entries]


@pytest.mark.parametrize(
    ("spec", "served", "waiting", "rejected"),
    [
        (set_spec(fineTunes=["bob", "alice"]), ["alice", "bob"], [], []),
        (set_spec(fineTunes=["alice", "carol", "zed"]), ["alice"], ["carol", "zed"], []),
        (set_spec(fineTunes=["dave", "erin", "frank"]), ["frank"], [], ["dave", "erin"]),
        (set_spec(fineTuneSelector={"matchLabels": TEAM}), ["alice", "bob"], ["carol", "hank"],
         ["dave", "erin", "gina", "ivan"]),
        (set_spec(fineTuneSelector={"matchLabels": TEAM}, adapters={"maxRank": 128}), ["alice", "bob", "gina"],
         ["carol", "hank"], ["dave", "erin", "ivan"]),
        (set_spec(fineTuneSelector={"matchLabels": {"tier": "gold"}}), ["alice"], [], []),
        (set_spec(fineTuneSelector={"matchExpressions": [{"key": "team", "operator": "In",
                                                          "values": ["portraits", "landscapes"]}]},
                  fineTunes=None), ["alice", "bob", "frank"], ["carol", "hank"], ["dave", "erin", "gina", "ivan"]),
        (set_spec(fineTuneSelector={"matchLabels": TEAM, "matchExpressions": [
            {"key": "tier", "operator": "DoesNotExist"}]}), ["bob"], ["carol", "hank"], ["dave", "erin", "gina", "ivan"]),
        (set_spec(fineTuneSelector={"matchExpressions": [{"key": "team", "operator": "NotIn",
                                                          "values": ["portraits"]}]}), ["frank"], [], []),
        (set_spec(fineTuneSelector={"matchExpressions": [{"key": "tier", "operator": "Exists"}]}), ["alice"], [], []),
        (set_spec(fineTuneSelector={}), ["alice", "bob", "frank"], ["carol", "hank"], ["dave", "erin", "gina", "ivan"]),
        (set_spec(fineTunes=["erin"], baseModel="stabilityai/stable-diffusion-xl-base-1.0"), ["erin"], [], []),
    ],
)
def test_resolve_adapter_set_serves_the_succeeded_fine_tunes_of_its_own_namespace_and_base_model(
    spec: dict[str, Any], served: list[str], waiting: list[str], rejected: list[str]
) -> None:
    spec = {key: value for key, value in spec.items() if value is not None}
    result = resolve_adapter_set(spec, FINETUNES, namespace=NS)
    assert (names(result.served), names(result.waiting), names(result.rejected)) == (served, waiting, rejected)
    # Never a fine-tune of another namespace, even of the same name and labels.
    assert all(adapter.lora == lora_of(adapter.name) for adapter in result.served)


def test_resolve_adapter_set_says_why_each_fine_tune_is_not_served() -> None:
    result = resolve_adapter_set(set_spec(fineTunes=["carol", "dave", "erin", "gina", "hank", "ivan", "zed"]),
                                 FINETUNES, namespace=NS)
    assert {e.name: e.reason for e in result.waiting} == {
        "carol": "FineTuneTraining", "hank": "FineTunePending", "zed": "FineTuneNotFound"}
    reasons = {e.name: (e.reason, e.message) for e in result.rejected}
    assert reasons["dave"] == ("FineTuneFailed", "SDXLFineTune dave failed (OutOfMemory): the trainer ran out of memory")
    assert reasons["erin"][0] == "BaseModelMismatch" and "stabilityai/stable-diffusion-xl-base-1.0" in reasons["erin"][1]
    assert reasons["gina"][0] == "RankTooHigh" and "spec.adapters.maxRank" in reasons["gina"][1]
    assert reasons["ivan"][0] == "NoLoRA"


def test_a_set_of_another_namespace_sees_only_its_own_fine_tunes() -> None:
    result = resolve_adapter_set(set_spec(fineTunes=["alice", "bob"]), FINETUNES, namespace="team-d")
    assert result.served == (Adapter("alice", lora_of("alice", "team-d")),)
    assert names(result.waiting) == ["bob"]


@pytest.mark.parametrize(
    ("selector", "labels", "expected"),
    [
        ({}, {}, True),
        ({"matchLabels": {"a": "1"}}, {"a": "1", "b": "2"}, True),
        ({"matchLabels": {"a": "1"}}, {"a": "2"}, False),
        ({"matchLabels": {"a": "1"}}, None, False),
        ({"matchExpressions": [{"key": "a", "operator": "In", "values": ["1", "2"]}]}, {"a": "2"}, True),
        ({"matchExpressions": [{"key": "a", "operator": "In", "values": ["1"]}]}, {}, False),
        ({"matchExpressions": [{"key": "a", "operator": "NotIn", "values": ["1"]}]}, {}, True),
        ({"matchExpressions": [{"key": "a", "operator": "NotIn", "values": ["1"]}]}, {"a": "1"}, False),
        ({"matchExpressions": [{"key": "a", "operator": "Exists"}]}, {"a": ""}, True),
        ({"matchExpressions": [{"key": "a", "operator": "DoesNotExist"}]}, {"a": ""}, False),
        ({"matchExpressions": [{"key": "a", "operator": "Bogus"}]}, {"a": "1"}, False),
    ],
)
def test_label_selector_semantics(selector: dict[str, Any], labels: dict[str, str] | None, expected: bool) -> None:
    assert selector_matches(selector, labels) is expected


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (set_spec(fineTunes=["a", "b"]), []),
        (set_spec(fineTuneSelector={"matchLabels": TEAM}, adapters={"resident": 2, "maxRank": 16}), []),
        (set_spec(fineTunes=["a"], accelerator="neuron"), [NEURON_MESSAGE]),
        ({"fineTunes": ["a"], "baseModel": "builtin:tiny"}, [NEURON_MESSAGE]),  # accelerator defaults to neuron
        ({"fineTunes": ["a"], "accelerator": "cpu"}, ["spec.baseModel: required with spec.fineTunes"]),
        (set_spec(fineTunes=["a"], fineTune="a"), ["set exactly one of spec.fineTune"]),
        (set_spec(fineTunes=["a"], fineTuneSelector={}), ["set exactly one of spec.fineTune"]),
        (set_spec(fineTunes=["a", "a"]), ["spec.fineTunes: each name at most once"]),
        (set_spec(fineTunes=["a"], adapters={"resident": 0}), ["spec.adapters.resident"]),
        (set_spec(fineTuneSelector={"matchExpressions": [{"key": "t", "operator": "In"}]}), ["need values"]),
        (set_spec(fineTunes=["a"], replicas=-1), ["spec.replicas"]),
    ],
)
def test_adapter_set_spec_errors(spec: dict[str, Any], expected: list[str]) -> None:
    errors = adapter_set_spec_errors(spec)
    assert len(errors) == len(expected), errors
    for error, part in zip(errors, expected, strict=True):
        assert part in error


def test_the_neuron_refusal_explains_why_in_the_crds_words() -> None:
    crd = yaml.safe_load((REPO_ROOT / "crds" / "sdxldeployments.sdxl.io.yaml").read_text())
    rules = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["x-kubernetes-validations"]
    [rule] = [rule for rule in rules if rule.get("fieldPath") == ".accelerator"]
    assert rule["message"] == NEURON_RULE_MESSAGE
    assert "a LoRA is fused into the model at compile time" in NEURON_MESSAGE


def test_a_set_on_neuron_is_refused_even_where_no_cel_ran(monkeypatch: pytest.MonkeyPatch) -> None:
    """An API server without CEL (the sandbox's emulator) admits it; the operator still never serves it."""
    monkeypatch.setattr(adapter_set_spec, "validate_deployment_spec", lambda spec: [])
    assert adapter_set_spec.adapter_set_spec_errors({"fineTunes": ["a"], "baseModel": "builtin:tiny"}) == [
        NEURON_MESSAGE]


def test_is_adapter_set_spec_and_covers() -> None:
    assert is_adapter_set_spec({"fineTunes": ["a"]}) and is_adapter_set_spec({"fineTuneSelector": {}})
    assert not is_adapter_set_spec({"fineTune": "a"}) and not is_adapter_set_spec({"lora": "s3://b/l"})
    assert covers({"fineTunes": ["alice"]}, FINETUNES[0]) and not covers({"fineTunes": ["bob"]}, FINETUNES[0])
    assert covers({"fineTuneSelector": {"matchLabels": {"tier": "gold"}}}, FINETUNES[0])


def test_adapters_configmap_lists_the_served_fine_tunes() -> None:
    adapter_set = AdapterSet((Adapter("alice", lora_of("alice")), Adapter("bob", lora_of("bob"))), (), ())
    configmap = build_adapters_configmap(OWNER, adapter_set)
    assert configmap == {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "portraits-adapters", "namespace": NS, "labels": SERVER_LABELS,
                     "ownerReferences": [{"controller": True, "blockOwnerDeletion": True,
                                          "apiVersion": "sdxl.io/v1alpha1", "kind": "SDXLDeployment",
                                          "name": "portraits", "uid": UID}]},
        "data": {"adapters.json": json.dumps({"adapters": {"alice": lora_of("alice"), "bob": lora_of("bob")}},
                                             indent=2, sort_keys=True) + "\n"},
    }
    kubernetes_validate.validate(configmap, "1.31", strict=True)


def server(spec: dict[str, Any]) -> dict[str, Any]:
    resolved = resolve_adapter_set_spec(spec, name="portraits", namespace=NS, uid=UID)
    return build_inference_deployment(OWNER, resolved, key=adapter_set_key(resolved, SETTINGS),
                                      artifact=str(spec["baseModel"]), settings=SETTINGS)


@pytest.mark.parametrize("accelerator", ["cpu", "nvidia"])
def test_server_of_a_set_serves_the_base_model_with_the_mounted_adapters_file(accelerator: str) -> None:
    deployment = server(set_spec(fineTuneSelector={"matchLabels": TEAM}, accelerator=accelerator,
                                 adapters={"resident": 4}))
    pod = deployment["spec"]["template"]["spec"]
    [container] = pod["containers"]
    assert container["args"] == [
        "serve", "--spec", "/etc/sdxl/spec.json", "--model", "builtin:tiny", "--port", "8080",
        "--adapters", "/etc/sdxl/adapters/adapters.json", *(["--compile-unet"] if accelerator == "nvidia" else []),
    ]
    # The set's limits reach the server through its spec (no LoRA: requests choose an adapter).
    spec = set_spec(fineTuneSelector={"matchLabels": TEAM}, accelerator=accelerator, adapters={"resident": 4})
    served = server_spec(resolve_adapter_set_spec(spec, name="portraits", namespace=NS, uid=UID), spec)
    assert served["adapters"] == {"resident": 4, "maxRank": 64} and served["accelerator"] == accelerator
    assert served["fineTuneSelector"] == {"matchLabels": TEAM} and "lora" not in served
    assert {"name": "spec", "mountPath": "/etc/sdxl", "readOnly": True} in container["volumeMounts"]
    assert {"name": "adapters", "configMap": {"name": "portraits-adapters"}} in pod["volumes"]
    assert {"name": "adapters", "mountPath": "/etc/sdxl/adapters", "readOnly": True} in container["volumeMounts"]
    # The whole map is mounted, never one key with subPath: the kubelet updates only such mounts in place.
    assert all("subPath" not in mount for mount in container["volumeMounts"])
    # The artifact store's claim, where the fine-tunes' LoRAs are, is mounted read-only.
    claims = {v["persistentVolumeClaim"]["claimName"]: v for v in pod["volumes"] if "persistentVolumeClaim" in v}
    assert list(claims) == ["sdxl-artifacts"] and claims["sdxl-artifacts"]["persistentVolumeClaim"]["readOnly"]
    kubernetes_validate.validate(deployment, "1.31", strict=True)


def test_the_set_of_fine_tunes_is_not_in_the_pod_template() -> None:
    """The selector, the names and the ConfigMap's content never roll the pods; only what they run does."""
    by_selector = server(set_spec(fineTuneSelector={"matchLabels": TEAM}))
    by_names = server(set_spec(fineTunes=["alice", "bob", "carol"]))
    assert by_selector["metadata"]["annotations"][TEMPLATE_HASH] == by_names["metadata"]["annotations"][TEMPLATE_HASH]
    assert by_selector["spec"] == by_names["spec"]
    other_base = server(set_spec(fineTunes=["alice"], baseModel="builtin:tiny-mid"))
    assert other_base["metadata"]["annotations"][TEMPLATE_HASH] != by_names["metadata"]["annotations"][TEMPLATE_HASH]
    more_resident = server(set_spec(fineTunes=["alice"], adapters={"resident": 2}))
    assert more_resident["metadata"]["annotations"][TEMPLATE_HASH] != by_names["metadata"]["annotations"][TEMPLATE_HASH]


def test_adapter_set_key_names_what_the_pods_run() -> None:
    def key(**fields: Any) -> str:
        return adapter_set_key(resolve_adapter_set_spec(set_spec(fineTunes=["a"], **fields), name="p",
                                                        namespace=NS, uid=UID), SETTINGS)
    assert len(key()) == 64 and key() == key(adapters={"resident": 3})
    assert len({key(), key(accelerator="nvidia"), key(baseModel="builtin:tiny-mid")}) == 3


NOW = datetime.datetime(2026, 11, 30, 12, 0, tzinfo=datetime.timezone.utc)


@pytest.mark.parametrize(("phase", "ready"), [("Ready", True), ("Deploying", False)])
def test_status_lists_adapters_ready_once_the_deployment_is_ready(phase: str, ready: bool) -> None:
    adapter_set = AdapterSet((Adapter("alice", "a.safetensors"),), (Excluded("carol", "FineTuneTraining", "w"),),
                             (Excluded("dave", "FineTuneFailed", "f"),))
    status = with_adapter_set_status({"phase": phase, "conditions": []}, adapter_set, base_model="builtin:tiny",
                                     now=NOW, generation=2)
    assert status["adapters"] == [{"name": "alice", "lora": "a.safetensors", "ready": ready}]
    assert status["adapterCount"] == 1
    assert status["waitingFineTunes"] == [{"name": "carol", "reason": "FineTuneTraining", "message": "w"}]
    assert status["rejectedFineTunes"] == [{"name": "dave", "reason": "FineTuneFailed", "message": "f"}]
    conditions = {c["type"]: c for c in status["conditions"]}
    assert conditions["FineTuneReady"]["reason"] == "AdapterSetResolved"
    assert conditions["Compiled"]["reason"] == "NotNeeded"


def deployment(spec: dict[str, Any], status: dict[str, Any]) -> dict[str, Any]:
    return {"metadata": {"name": "portraits", "namespace": NS}, "spec": spec, "status": status}


def test_needs_refresh_when_a_fine_tune_moves_in_or_out_of_a_set() -> None:
    spec = set_spec(fineTuneSelector={"matchLabels": TEAM})
    serving_alice = deployment(spec, {"adapters": [{"name": "alice", "lora": lora_of("alice"), "ready": True}]})
    assert not needs_refresh(serving_alice, FINETUNES[0], deleted=False)  # nothing new
    assert needs_refresh(serving_alice, FINETUNES[0], deleted=True)  # gone
    assert needs_refresh(serving_alice, finetune("alice", labels={}), deleted=False)  # label removed
    assert needs_refresh(serving_alice, finetune("bob", labels=TEAM), deleted=False)  # joins
    assert not needs_refresh(serving_alice, finetune("frank", labels={"team": "x"}), deleted=False)  # not ours
    waiting = deployment(spec, {"waitingFineTunes": [{"name": "carol", "reason": "FineTuneTraining", "message": ""}]})
    assert not needs_refresh(waiting, finetune("carol", "Training", labels=TEAM), deleted=False)  # progress only
    assert needs_refresh(waiting, finetune("carol", labels=TEAM), deleted=False)  # succeeded
    other_namespace = finetune("bob", namespace="team-d", labels=TEAM)
    assert not needs_refresh(serving_alice, other_namespace, deleted=False)
    single = {"metadata": {"namespace": NS}, "spec": {"fineTune": "alice"}, "status": {}}
    assert not needs_refresh(single, FINETUNES[0], deleted=False)
