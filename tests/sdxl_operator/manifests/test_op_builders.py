"""Builders: whole manifests compared with expected dicts, and every manifest valid for Kubernetes 1.31."""

from __future__ import annotations

import copy
import json
from typing import Any

import kopf
import kubernetes_validate
import pytest

from sdxl_contract.finetune_spec import FineTuneSpec
from sdxl_operator.core.settings import OperatorSettings
from sdxl_operator.manifests.spec_configmap import build_spec_configmap
from sdxl_operator.manifests.training_job import build_training_job
from sdxl_operator.spec.resolved_spec import resolve_finetune_spec, resolved_finetune_spec

KUBERNETES_VERSION = "1.31"
UID = "0f1e2d3c-4b5a-6978-8091-a2b3c4d5e6f7"
OWNER: dict[str, Any] = {
    "apiVersion": "sdxl.io/v1alpha1",
    "kind": "SDXLFineTune",
    "metadata": {"name": "alice", "namespace": "team-a", "uid": UID, "generation": 1},
    "spec": {
        "instanceImages": "pvc://photos/alice",
        "instancePrompt": "a photo of sks person",
        "output": "pvc://results/alice",
        "resources": {"gpus": 1, "nodeSelector": {"gpu": "a10g"},
                      "tolerations": [{"key": "spot", "operator": "Exists", "effect": "NoSchedule"}]},
    },
}
SETTINGS = OperatorSettings(
    image_train="registry.example/sdxl-train:1.2.3",
    train_node_selector={"pool": "training", "gpu": "any"},
    train_tolerations=({"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},),
    hf_token_secret="hf-token",
    workload_service_account="sdxl-workload",
    train_deadline_seconds=7200,
    train_backoff_limit=1,
)
LABELS = {
    "app.kubernetes.io/managed-by": "sdxl-operator",
    "app.kubernetes.io/name": "sdxl-trainer",
    "app.kubernetes.io/instance": "alice",
    "sdxl.io/finetune": "alice",
}
OWNER_REFERENCES = [{"controller": True, "blockOwnerDeletion": True, "apiVersion": "sdxl.io/v1alpha1",
                     "kind": "SDXLFineTune", "name": "alice", "uid": UID}]


def _resolved(owner: dict[str, Any] = OWNER) -> dict[str, Any]:
    meta = owner["metadata"]
    return resolve_finetune_spec(owner["spec"], name=meta["name"], namespace=meta["namespace"], uid=meta["uid"],
                                 artifact_store="s3://store/prefix")


def _spec(owner: dict[str, Any] = OWNER) -> FineTuneSpec:
    meta = owner["metadata"]
    return resolved_finetune_spec(owner["spec"], name=meta["name"], namespace=meta["namespace"], uid=meta["uid"],
                                  artifact_store="s3://store/prefix")


def _expected_job() -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "alice-train", "namespace": "team-a", "labels": LABELS,
                     "ownerReferences": OWNER_REFERENCES},
        "spec": {
            "backoffLimit": 1,
            "activeDeadlineSeconds": 7200,
            "podFailurePolicy": {"rules": [
                {"action": "FailJob", "onExitCodes": {"containerName": "trainer", "operator": "In", "values": [2]}},
                {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
            ]},
            # Deleted a day after it ends: its result is in the custom resource's status by then.
            "ttlSecondsAfterFinished": 86400,
            "template": {
                # Karpenter leaves the node of a running training pod alone.
                "metadata": {"labels": LABELS, "annotations": {"karpenter.sh/do-not-disrupt": "true"}},
                "spec": {
                    "restartPolicy": "Never",
                    "automountServiceAccountToken": False,
                    "securityContext": {"runAsNonRoot": True, "runAsUser": 1000, "runAsGroup": 1000,
                                        "fsGroup": 1000, "seccompProfile": {"type": "RuntimeDefault"}},
                    "serviceAccountName": "sdxl-workload",
                    "nodeSelector": {"pool": "training", "gpu": "a10g"},
                    "tolerations": [
                        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},
                        {"key": "spot", "operator": "Exists", "effect": "NoSchedule"},
                    ],
                    "containers": [{
                        "name": "trainer",
                        "image": "registry.example/sdxl-train:1.2.3",
                        "imagePullPolicy": "IfNotPresent",
                        "command": ["sdxl-workload"],
                        "args": ["train", "--spec", "/etc/sdxl/spec.json", "--resume", "latest",
                                 "--max-instance-images", "1000"],
                        "env": [
                            {"name": "SDXL_TERMINATION_LOG", "value": "/dev/termination-log"},
                            {"name": "SDXL_PVC_ROOT", "value": "/mnt/pvc"},
                            {"name": "PYTHONUNBUFFERED", "value": "1"},
                            {"name": "HOME", "value": "/tmp"},
                            {"name": "XDG_CACHE_HOME", "value": "/var/cache/sdxl"},
                            {"name": "HF_HOME", "value": "/var/cache/sdxl/huggingface"},
                            {"name": "TORCH_HOME", "value": "/var/cache/sdxl/torch"},
                            {"name": "SDXL_CACHE_DIR", "value": "/var/cache/sdxl"},
                            {"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {
                                "name": "hf-token", "key": "token", "optional": True}}},
                        ],
                        "resources": {
                            "requests": {"cpu": "8", "memory": "32Gi", "nvidia.com/gpu": "1"},
                            "limits": {"memory": "32Gi", "nvidia.com/gpu": "1"},
                        },
                        "volumeMounts": [
                            {"name": "spec", "mountPath": "/etc/sdxl", "readOnly": True},
                            {"name": "dshm", "mountPath": "/dev/shm"},
                            {"name": "tmp", "mountPath": "/tmp"},
                            {"name": "cache", "mountPath": "/var/cache/sdxl"},
                            {"name": "pvc-photos", "mountPath": "/mnt/pvc/photos", "readOnly": True},
                            {"name": "pvc-results", "mountPath": "/mnt/pvc/results"},
                        ],
                        "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                            "runAsNonRoot": True, "capabilities": {"drop": ["ALL"]}},
                        "terminationMessagePath": "/dev/termination-log",
                        "terminationMessagePolicy": "FallbackToLogsOnError",
                    }],
                    "volumes": [
                        {"name": "spec", "configMap": {"name": "alice-spec",
                                                       "items": [{"key": "spec.json", "path": "spec.json"}]}},
                        {"name": "dshm", "emptyDir": {"medium": "Memory"}},
                        {"name": "tmp", "emptyDir": {}},
                        {"name": "cache", "emptyDir": {}},
                        {"name": "pvc-photos", "persistentVolumeClaim": {"claimName": "photos", "readOnly": True}},
                        {"name": "pvc-results", "persistentVolumeClaim": {"claimName": "results"}},
                    ],
                },
            },
        },
    }


def test_training_job_whole_manifest() -> None:
    assert build_training_job(OWNER, _spec(), SETTINGS) == _expected_job()


def test_quality_models_on_a_claim_are_mounted_read_only() -> None:
    owner = copy.deepcopy(OWNER)
    owner["spec"]["quality"] = {"clipModel": "pvc://models/clip-vit-base-patch32", "dinoModel": "facebook/dino-vits16"}
    pod = build_training_job(owner, _spec(owner), SETTINGS)["spec"]["template"]["spec"]
    assert {"name": "pvc-models", "persistentVolumeClaim": {"claimName": "models", "readOnly": True}} in pod["volumes"]
    assert {"name": "pvc-models", "mountPath": "/mnt/pvc/models", "readOnly": True} in \
        pod["containers"][0]["volumeMounts"]


def test_cpu_only_job_has_no_gpu_request_and_defaults_leave_optional_fields_out() -> None:
    owner = copy.deepcopy(OWNER)
    owner["spec"] = {"baseModel": "builtin:tiny", "instanceImages": "builtin:sample-subject",
                     "instancePrompt": "a photo of sks person", "resources": {"gpus": 0, "cpu": "2", "memory": "4Gi"}}
    job = build_training_job(owner, _spec(owner), OperatorSettings())
    pod = job["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["resources"] == {"requests": {"cpu": "2", "memory": "4Gi"}, "limits": {"memory": "4Gi"}}
    assert "serviceAccountName" not in pod and "nodeSelector" not in pod and "tolerations" not in pod
    assert not any(env["name"] == "HF_TOKEN" for env in container["env"])
    assert [v["name"] for v in pod["volumes"]] == ["spec", "dshm", "tmp", "cache"]
    assert container["image"] == OperatorSettings().image_train


def test_spec_configmap_whole_manifest() -> None:
    resolved = _resolved()
    assert build_spec_configmap(OWNER, resolved) == {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "alice-spec", "namespace": "team-a", "labels": LABELS,
                     "ownerReferences": OWNER_REFERENCES},
        "data": {"spec.json": json.dumps(resolved, indent=2, sort_keys=True) + "\n"},
    }
    assert json.loads(build_spec_configmap(OWNER, resolved)["data"]["spec.json"]) == resolved


def test_long_names_still_give_valid_children() -> None:
    owner = copy.deepcopy(OWNER)
    owner["metadata"]["name"] = "a-very-long-fine-tune-name-for-a-person-with-many-photos-and-versions-v2"
    job = build_training_job(owner, _spec(owner), SETTINGS)
    configmap = build_spec_configmap(owner, _resolved(owner))
    for manifest in (job, configmap):
        assert len(manifest["metadata"]["name"]) <= 63
        assert all(len(value) <= 63 for value in manifest["metadata"]["labels"].values())
        kubernetes_validate.validate(manifest, KUBERNETES_VERSION, strict=True)
    assert job["spec"]["template"]["spec"]["volumes"][0]["configMap"]["name"] == configmap["metadata"]["name"]


@pytest.mark.parametrize("build", ["job", "configmap"])
def test_built_manifests_are_valid_kubernetes(build: str) -> None:
    manifest = (build_training_job(OWNER, _spec(), SETTINGS) if build == "job"
                else build_spec_configmap(OWNER, _resolved()))
    kubernetes_validate.validate(manifest, KUBERNETES_VERSION, strict=True)


def test_builders_set_the_same_owner_reference_as_kopf_adopt() -> None:
    manifest = build_training_job(OWNER, _spec(), SETTINGS)
    adopted = copy.deepcopy(manifest)
    kopf.adopt(adopted, owner=kopf.Body(OWNER), forced=False)  # type: ignore[arg-type]
    assert adopted["metadata"]["ownerReferences"] == manifest["metadata"]["ownerReferences"]


def test_spec_text_never_reaches_the_manifest_outside_the_configmap() -> None:
    owner = copy.deepcopy(OWNER)
    owner["spec"]["instancePrompt"] = 'a photo of sks person"; rm -rf / #\nkind: Pod'
    job = build_training_job(owner, _spec(owner), SETTINGS)
    assert "rm -rf" not in json.dumps(job)
    configmap = build_spec_configmap(owner, _resolved(owner))
    assert json.loads(configmap["data"]["spec.json"])["instancePrompt"] == owner["spec"]["instancePrompt"]
