"""SDXLDeployment builders: whole manifests compared with expected dicts, every manifest valid for Kubernetes.

Validation runs for all three accelerators, with and without autoscaling and auth, and for compile Jobs
on a Neuron node and on a CPU pool.
"""

from __future__ import annotations

import copy
import itertools
import json
from typing import Any

import kopf
import kubernetes_validate
import pytest

from sdxl_operator.core.settings import OperatorSettings
from sdxl_operator.handlers.deployment_handlers import key_of
from sdxl_operator.manifests.autoscaler import build_autoscaler
from sdxl_operator.manifests.compile_job import build_compile_configmap, build_compile_job
from sdxl_operator.manifests.inference_deployment import build_inference_deployment, template_hash
from sdxl_operator.manifests.inference_service import build_inference_service, service_url
from sdxl_operator.manifests.server_spec import build_server_spec_configmap, server_spec, server_spec_hash
from sdxl_operator.spec.model_source import ModelSource
from sdxl_operator.spec.resolved_deployment_spec import resolve_deployment_spec

KUBERNETES_VERSION = "1.31"
UID = "9a8b7c6d-5e4f-3a2b-1c0d-e9f8a7b6c5d4"
SHA = "d97320424be7ffac2de421d8eaea6957627f1aa571e1d9bc1cb687c4a21ba1b4"
KEY = "0123456789abcdef" * 4
ARTIFACT = f"pvc://sdxl-artifacts/store/compiled/{KEY}"
SOURCE = ModelSource(lora="pvc://sdxl-artifacts/store/finetunes/team-a/alice/1a2b3c4d/lora/"
                          "pytorch_lora_weights.safetensors",
                     lora_sha256=SHA, base_model="stabilityai/stable-diffusion-xl-base-1.0", base_revision="main",
                     finetune="alice-v1")
SETTINGS = OperatorSettings(
    image_neuron="registry.example/sdxl-neuron@sha256:" + "1" * 64,
    image_nvidia="registry.example/sdxl-gpu:1.2.3",
    image_cpu="registry.example/sdxl-cpu:1.2.3",
    compile_on_neuron=True,
    compile_node_selector={"node.kubernetes.io/instance-type": "inf2.8xlarge"},
    compile_tolerations=({"key": "aws.amazon.com/neuron", "operator": "Exists", "effect": "NoSchedule"},),
    neuron_node_selector={"pool": "inf2"},
    nvidia_tolerations=({"key": "gpu-pool", "operator": "Exists", "effect": "NoSchedule"},),
    hf_token_secret="hf-token",
    workload_service_account="sdxl-workload",
    compile_deadline_seconds=7200,
)
OWNER_REFERENCES = [{"controller": True, "blockOwnerDeletion": True, "apiVersion": "sdxl.io/v1alpha1",
                     "kind": "SDXLDeployment", "name": "alice", "uid": UID}]
SERVER_LABELS = {"app.kubernetes.io/managed-by": "sdxl-operator", "app.kubernetes.io/name": "sdxl-server",
                 "app.kubernetes.io/instance": "alice", "sdxl.io/deployment": "alice"}
COMPILER_LABELS = {**SERVER_LABELS, "app.kubernetes.io/name": "sdxl-compiler", "sdxl.io/compile-key": KEY[:63]}
SECURE_CONTAINER = {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "runAsNonRoot": True,
                    "capabilities": {"drop": ["ALL"]}}
SECURE_POD = {"runAsNonRoot": True, "runAsUser": 1000, "runAsGroup": 1000, "fsGroup": 1000,
              "seccompProfile": {"type": "RuntimeDefault"}}
SCRATCH_ENV = [
    {"name": "HOME", "value": "/tmp"},
    {"name": "XDG_CACHE_HOME", "value": "/var/cache/sdxl"},
    {"name": "HF_HOME", "value": "/var/cache/sdxl/huggingface"},
    {"name": "TORCH_HOME", "value": "/var/cache/sdxl/torch"},
    {"name": "SDXL_CACHE_DIR", "value": "/var/cache/sdxl"},
]
NEURON_TOLERATION = {"key": "aws.amazon.com/neuron", "operator": "Exists", "effect": "NoSchedule"}


def owner(**spec: Any) -> dict[str, Any]:
    base = {"fineTune": "alice-v1", "accelerator": "neuron"}
    base.update(spec)
    return {"apiVersion": "sdxl.io/v1alpha1", "kind": "SDXLDeployment",
            "metadata": {"name": "alice", "namespace": "team-a", "uid": UID, "generation": 1},
            "spec": {k: v for k, v in base.items() if v is not None}}


def resolved(body: dict[str, Any], source: ModelSource = SOURCE) -> dict[str, Any]:
    return resolve_deployment_spec(body["spec"], source, name="alice", namespace="team-a", uid=UID)


FULL = owner(neuron={"height": 768, "width": 1344}, replicas=2, loraScale=0.8,
             resources={"cpu": "6", "tolerations": [{"key": "spot", "operator": "Exists"}]},
             auth={"apiKeySecret": "sdxl-api-key"}, autoscaling={"maxReplicas": 4})


def test_resolved_spec_replaces_the_finetune_with_its_lora_and_fills_defaults() -> None:
    assert resolved(FULL) == {
        "lora": SOURCE.lora, "loraSha256": SHA, "baseModel": "stabilityai/stable-diffusion-xl-base-1.0",
        "baseModelRevision": "main", "accelerator": "neuron",
        "neuron": {"batchSize": 1, "height": 768, "width": 1344, "numImagesPerPrompt": 1, "autoCastType": "bf16",
                   "instanceType": "inf2.8xlarge"},
        "loraScale": 0.8, "replicas": 2, "server": {"maxBatch": 1, "queueSize": 8, "requestTimeoutSeconds": 300},
        "resources": {"cpu": "6", "nodeSelector": {}, "tolerations": [{"key": "spot", "operator": "Exists"}]},
        "scheduling": {"topologySpreadConstraints": [], "podLabels": {}, "podAnnotations": {}},
        "auth": {"apiKeySecret": "sdxl-api-key", "apiKeySecretKey": "api-key"},
        "autoscaling": {"minReplicas": 1, "maxReplicas": 4, "metric": "cpu", "targetCPUUtilizationPercentage": 70},
        "metadata": {"name": "alice", "namespace": "team-a", "uid": UID},
    }
    gpu = resolved(owner(accelerator="nvidia"))
    assert "neuron" not in gpu and "auth" not in gpu and "autoscaling" not in gpu


def test_compile_job_on_a_neuron_node_whole_manifest() -> None:
    spec = resolved(FULL)
    annotations = {"sdxl.io/compile-key": KEY, "sdxl.io/compiled-artifact": ARTIFACT}
    expected = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": f"alice-compile-{KEY[:8]}", "namespace": "team-a", "labels": COMPILER_LABELS,
                     "ownerReferences": OWNER_REFERENCES, "annotations": annotations},
        "spec": {
            "backoffLimit": 1,
            "activeDeadlineSeconds": 7200,
            "podFailurePolicy": {"rules": [
                {"action": "FailJob", "onExitCodes": {"containerName": "compiler", "operator": "In", "values": [2]}},
                {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
            ]},
            # Deleted a day after it ends: its result is in the custom resource's status by then.
            "ttlSecondsAfterFinished": 86400,
            "template": {
                # Karpenter leaves the node of a running compile alone.
                "metadata": {"labels": COMPILER_LABELS,
                             "annotations": {"karpenter.sh/do-not-disrupt": "true", **annotations}},
                "spec": {
                    "restartPolicy": "Never",
                    "automountServiceAccountToken": False,
                    "securityContext": SECURE_POD,
                    "containers": [{
                        "name": "compiler",
                        "image": SETTINGS.image_neuron,
                        "imagePullPolicy": "IfNotPresent",
                        "command": ["sdxl-workload"],
                        "args": ["compile", "--spec", "/etc/sdxl/spec.json", "--store", "pvc://sdxl-artifacts/store",
                                 "--key", KEY, "--runtime-id", SETTINGS.image_neuron],
                        "env": [
                            {"name": "SDXL_TERMINATION_LOG", "value": "/dev/termination-log"},
                            {"name": "SDXL_PVC_ROOT", "value": "/mnt/pvc"},
                            {"name": "PYTHONUNBUFFERED", "value": "1"},
                            *SCRATCH_ENV,
                            {"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": "hf-token", "key": "token",
                                                                                 "optional": True}}},
                        ],
                        # /tmp holds the staged compiled model: the node must have the disk.
                        "resources": {"requests": {"cpu": "8", "memory": "96Gi", "ephemeral-storage": "64Gi",
                                                   "aws.amazon.com/neuron": "1"},
                                      "limits": {"memory": "96Gi", "aws.amazon.com/neuron": "1"}},
                        "volumeMounts": [
                            {"name": "spec", "mountPath": "/etc/sdxl", "readOnly": True},
                            {"name": "dshm", "mountPath": "/dev/shm"},
                            {"name": "tmp", "mountPath": "/tmp"},
                            {"name": "cache", "mountPath": "/var/cache/sdxl"},
                            {"name": "pvc-sdxl-artifacts", "mountPath": "/mnt/pvc/sdxl-artifacts"},
                        ],
                        "securityContext": SECURE_CONTAINER,
                        "terminationMessagePath": "/dev/termination-log",
                        "terminationMessagePolicy": "FallbackToLogsOnError",
                    }],
                    "volumes": [
                        {"name": "spec", "configMap": {"name": f"alice-compile-{KEY[:8]}",
                                                       "items": [{"key": "spec.json", "path": "spec.json"}]}},
                        {"name": "dshm", "emptyDir": {"medium": "Memory"}},
                        {"name": "tmp", "emptyDir": {"sizeLimit": "64Gi"}},
                        {"name": "cache", "emptyDir": {}},
                        {"name": "pvc-sdxl-artifacts", "persistentVolumeClaim": {"claimName": "sdxl-artifacts"}},
                    ],
                    "serviceAccountName": "sdxl-workload",
                    "nodeSelector": {"node.kubernetes.io/instance-type": "inf2.8xlarge"},
                    "tolerations": [NEURON_TOLERATION],
                },
            },
        },
    }
    assert build_compile_job(FULL, spec, KEY, SETTINGS) == expected


def test_compile_configmap_holds_the_resolved_spec_and_is_immutable() -> None:
    spec = resolved(FULL)
    configmap = build_compile_configmap(FULL, spec, KEY)
    assert configmap == {
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": f"alice-compile-{KEY[:8]}", "namespace": "team-a", "labels": COMPILER_LABELS,
                     "ownerReferences": OWNER_REFERENCES, "annotations": {"sdxl.io/compile-key": KEY}},
        "immutable": True,
        "data": {"spec.json": json.dumps(spec, indent=2, sort_keys=True) + "\n"},
    }


@pytest.mark.parametrize("accelerator, on_neuron, base, cpu, memory, device, selector, tolerations", [
    ("neuron", False, "stabilityai/stable-diffusion-xl-base-1.0", "8", "96Gi", False,
     {"node.kubernetes.io/instance-type": "inf2.8xlarge"}, [NEURON_TOLERATION]),  # the pool's own
    ("nvidia", True, "stabilityai/stable-diffusion-xl-base-1.0", "4", "32Gi", False, None, None),
    ("nvidia", False, "stabilityai/stable-diffusion-xl-base-1.0", "4", "32Gi", False,
     {"node.kubernetes.io/instance-type": "inf2.8xlarge"}, [NEURON_TOLERATION]),
    ("cpu", True, "builtin:tiny", "1", "2Gi", False, None, None),
    ("neuron", True, "builtin:tiny", "1", "2Gi", True, {"node.kubernetes.io/instance-type": "inf2.8xlarge"},
     [NEURON_TOLERATION]),
])
def test_compile_placement_and_size_depend_on_accelerator_pool_and_model(
    accelerator: str, on_neuron: bool, base: str, cpu: str, memory: str, device: bool,
    selector: dict[str, str] | None, tolerations: list[dict[str, str]] | None,
) -> None:
    settings = SETTINGS if on_neuron else OperatorSettings(**{**SETTINGS.__dict__, "compile_on_neuron": False})
    source = ModelSource(lora=SOURCE.lora, lora_sha256=None, base_model=base, base_revision="main", finetune=None)
    job = build_compile_job(owner(accelerator=accelerator), resolved(owner(accelerator=accelerator), source),
                            KEY, settings)
    pod = job["spec"]["template"]["spec"]
    requests = pod["containers"][0]["resources"]["requests"]
    assert (requests["cpu"], requests["memory"]) == (cpu, memory)
    assert ("aws.amazon.com/neuron" in requests) is device
    assert "nvidia.com/gpu" not in requests  # a GPU prepare runs on CPU
    assert pod.get("nodeSelector") == selector and pod.get("tolerations") == tolerations
    assert "--lora-sha256" not in pod["containers"][0]["args"]
    # Only a Neuron compile of a real model stages gigabytes under /tmp.
    staged = "64Gi" if accelerator == "neuron" and not base.startswith("builtin:") else None
    assert requests.get("ephemeral-storage") == staged
    tmp = next(volume for volume in pod["volumes"] if volume["name"] == "tmp")
    assert tmp["emptyDir"].get("sizeLimit") == staged
    kubernetes_validate.validate(job, KUBERNETES_VERSION, strict=True)


def _expected_neuron_deployment() -> dict[str, Any]:
    spec: dict[str, Any] = {
        "selector": {"matchLabels": SERVER_LABELS},
        "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
        "revisionHistoryLimit": 3,
        "progressDeadlineSeconds": 2400,
        "template": {
            "metadata": {"labels": SERVER_LABELS,
                         "annotations": {"sdxl.io/compile-key": KEY, "sdxl.io/compiled-artifact": ARTIFACT,
                                         "sdxl.io/spec-hash": server_spec_hash(resolved(FULL))}},
            "spec": {
                "automountServiceAccountToken": False,
                "securityContext": SECURE_POD,
                # requestTimeoutSeconds (300) + margin: SIGTERM drains accepted requests first
                "terminationGracePeriodSeconds": 315,
                "containers": [{
                    "name": "server",
                    "image": SETTINGS.image_neuron,
                    "imagePullPolicy": "IfNotPresent",
                    "command": ["sdxl-workload"],
                    "args": ["serve", "--spec", "/etc/sdxl/spec.json", "--model", ARTIFACT, "--port", "8080",
                             "--api-key-file", "/etc/sdxl/auth/api-key"],
                    "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"}],
                    "env": [
                        {"name": "SDXL_TERMINATION_LOG", "value": "/dev/termination-log"},
                        {"name": "SDXL_PVC_ROOT", "value": "/mnt/pvc"},
                        {"name": "PYTHONUNBUFFERED", "value": "1"},
                        *SCRATCH_ENV,
                    ],
                    "resources": {"requests": {"cpu": "6", "memory": "24Gi", "aws.amazon.com/neuron": "1"},
                                  "limits": {"memory": "24Gi", "aws.amazon.com/neuron": "1"}},
                    "startupProbe": {"httpGet": {"path": "/readyz", "port": "http"}, "periodSeconds": 10,
                                     "timeoutSeconds": 5, "failureThreshold": 180},
                    "readinessProbe": {"httpGet": {"path": "/readyz", "port": "http"}, "periodSeconds": 5,
                                       "timeoutSeconds": 5, "failureThreshold": 3},
                    "livenessProbe": {"httpGet": {"path": "/healthz", "port": "http"}, "periodSeconds": 10,
                                      "timeoutSeconds": 5, "failureThreshold": 6},
                    "volumeMounts": [
                        {"name": "spec", "mountPath": "/etc/sdxl", "readOnly": True},
                        {"name": "dshm", "mountPath": "/dev/shm"},
                        {"name": "tmp", "mountPath": "/tmp"},
                        {"name": "cache", "mountPath": "/var/cache/sdxl"},
                        {"name": "pvc-sdxl-artifacts", "mountPath": "/mnt/pvc/sdxl-artifacts", "readOnly": True},
                        {"name": "api-key", "mountPath": "/etc/sdxl/auth", "readOnly": True},
                    ],
                    "securityContext": SECURE_CONTAINER,
                    "terminationMessagePath": "/dev/termination-log",
                    "terminationMessagePolicy": "FallbackToLogsOnError",
                }],
                "volumes": [
                    {"name": "spec", "configMap": {"name": "alice-server-spec",
                                                   "items": [{"key": "spec.json", "path": "spec.json"}]}},
                    {"name": "dshm", "emptyDir": {"medium": "Memory"}},
                    {"name": "tmp", "emptyDir": {}},
                    {"name": "cache", "emptyDir": {}},
                    {"name": "pvc-sdxl-artifacts",
                     "persistentVolumeClaim": {"claimName": "sdxl-artifacts", "readOnly": True}},
                    {"name": "api-key", "secret": {"secretName": "sdxl-api-key", "defaultMode": 0o440,
                                                   "items": [{"key": "api-key", "path": "api-key"}]}},
                ],
                "serviceAccountName": "sdxl-workload",
                "nodeSelector": {"node.kubernetes.io/instance-type": "inf2.8xlarge", "pool": "inf2"},
                "tolerations": [NEURON_TOLERATION, {"key": "spot", "operator": "Exists"}],
            },
        },
    }
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "alice", "namespace": "team-a", "labels": SERVER_LABELS,
                     "ownerReferences": OWNER_REFERENCES, "annotations": {"sdxl.io/template-hash": template_hash(spec)}},
        "spec": spec,
    }


def test_neuron_deployment_with_auth_and_autoscaling_whole_manifest() -> None:
    built = build_inference_deployment(FULL, resolved(FULL), key=KEY, artifact=ARTIFACT, settings=SETTINGS)
    assert built == _expected_neuron_deployment()
    assert "replicas" not in built["spec"]  # the autoscaler owns it


def test_service_and_autoscaler_whole_manifests() -> None:
    assert build_inference_service(FULL) == {
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "alice", "namespace": "team-a", "labels": SERVER_LABELS,
                     "ownerReferences": OWNER_REFERENCES},
        "spec": {"type": "ClusterIP", "selector": SERVER_LABELS,
                 "ports": [{"name": "http", "port": 8080, "targetPort": "http", "protocol": "TCP"}]},
    }
    assert service_url("alice", "team-a") == "http://alice.team-a.svc:8080"
    assert build_autoscaler(FULL, resolved(FULL)) == {
        "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "alice", "namespace": "team-a", "labels": SERVER_LABELS,
                     "ownerReferences": OWNER_REFERENCES},
        "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "alice"},
                 "minReplicas": 1, "maxReplicas": 4,
                 "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {
                     "type": "Utilization", "averageUtilization": 70}}}]},
    }
    assert build_autoscaler(owner(), resolved(owner())) is None


CASES = list(itertools.product(("neuron", "nvidia", "cpu"), (False, True), (False, True)))


@pytest.mark.parametrize("accelerator, autoscaling, auth", CASES)
def test_every_built_manifest_is_valid_kubernetes(accelerator: str, autoscaling: bool, auth: bool) -> None:
    body = owner(accelerator=accelerator, autoscaling={"minReplicas": 2, "maxReplicas": 5} if autoscaling else None,
                 auth={"apiKeySecret": "key", "apiKeySecretKey": "token"} if auth else None, replicas=3)
    spec = resolved(body)
    manifests = [build_compile_configmap(body, spec, KEY), build_compile_job(body, spec, KEY, SETTINGS),
                 build_inference_deployment(body, spec, key=KEY, artifact=ARTIFACT, settings=SETTINGS),
                 build_inference_service(body)]
    hpa = build_autoscaler(body, spec)
    assert (hpa is not None) is autoscaling
    manifests += [hpa] if hpa else []
    for manifest in manifests:
        kubernetes_validate.validate(manifest, KUBERNETES_VERSION, strict=True)
        # The builders write the ownerReference exactly as kopf.adopt would: adopting changes nothing.
        adopted = copy.deepcopy(manifest)
        kopf.adopt(adopted, owner=body, nested=())
        assert adopted == manifest
    deployment = manifests[2]
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    device = {"neuron": "aws.amazon.com/neuron", "nvidia": "nvidia.com/gpu"}.get(accelerator)
    assert [k for k in container["resources"]["limits"] if k != "memory"] == ([device] if device else [])
    assert ("replicas" in deployment["spec"]) is not autoscaling
    assert ("--api-key-file" in container["args"]) is auth
    # The server reads the accelerator (and everything else it serves with) from its spec ConfigMap.
    assert container["args"][:3] == ["serve", "--spec", "/etc/sdxl/spec.json"]
    served = build_server_spec_configmap(body, server_spec(spec, body["spec"]))
    kubernetes_validate.validate(served, KUBERNETES_VERSION, strict=True)
    assert json.loads(served["data"]["spec.json"])["accelerator"] == accelerator
    startup = container["startupProbe"]
    budget = startup["failureThreshold"] * startup["periodSeconds"]
    assert budget >= (1800 if accelerator == "neuron" else 900)


def test_key_changes_with_the_model_but_not_with_serving_settings() -> None:
    base = key_of(resolved(owner()), SETTINGS)
    assert key_of(resolved(owner(replicas=5, server={"maxBatch": 4}, auth={"apiKeySecret": "k"})), SETTINGS) == base
    for changed in (owner(loraScale=0.5), owner(neuron={"height": 768}), owner(accelerator="nvidia")):
        assert key_of(resolved(changed), SETTINGS) != base
    other_lora = ModelSource(lora=SOURCE.lora, lora_sha256="e" * 64, base_model=SOURCE.base_model,
                             base_revision="main", finetune="alice-v1")
    assert key_of(resolved(owner(), other_lora), SETTINGS) != base
    newer_image = OperatorSettings(**{**SETTINGS.__dict__, "image_neuron": "registry.example/sdxl-neuron:2"})
    assert key_of(resolved(owner()), newer_image) != base
