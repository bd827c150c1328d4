"""spec.scheduling and the workload image pull secrets in the pods of all three builders, as whole manifests.

Each case builds a child twice, without and with the scheduling block: the second is the first plus
exactly the expected fields (so nothing else moved), and valid for Kubernetes.
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

import kubernetes_validate

from sdxl_operator.core.settings import OperatorSettings
from sdxl_operator.manifests.compile_job import build_compile_job
from sdxl_operator.manifests.inference_deployment import build_inference_deployment, template_hash
from sdxl_operator.manifests.server_spec import SPEC_HASH, server_spec_hash
from sdxl_operator.manifests.training_job import build_training_job
from sdxl_operator.manifests.workload_pod import pod_template_metadata
from sdxl_operator.spec.model_source import ModelSource
from sdxl_operator.spec.resolved_deployment_spec import resolve_deployment_spec
from sdxl_operator.spec.resolved_spec import resolved_finetune_spec

KUBERNETES_VERSION = "1.31"
UID = "0f1e2d3c-4b5a-6978-8091-a2b3c4d5e6f7"
KEY = "0123456789abcdef" * 4
ARTIFACT = f"pvc://sdxl-artifacts/store/compiled/{KEY}"
SOURCE = ModelSource(lora="pvc://sdxl-artifacts/store/finetunes/team-a/alice/1a2b3c4d/lora/"
                          "pytorch_lora_weights.safetensors",
                     lora_sha256="ab" * 32, base_model="stabilityai/stable-diffusion-xl-base-1.0",
                     base_revision="main", finetune="alice-v1")
SETTINGS = OperatorSettings(workload_service_account="sdxl-workload")
PULLING = dataclasses.replace(SETTINGS, workload_image_pull_secrets=("regcred", "mirror-cred"))
ZONE_AFFINITY = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
    {"matchExpressions": [{"key": "topology.kubernetes.io/zone", "operator": "In", "values": ["us-east-1a"]}]}]}}}
SCHEDULING: dict[str, Any] = {
    "affinity": ZONE_AFFINITY,
    "priorityClassName": "batch-low",
    "topologySpreadConstraints": [
        {"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone", "whenUnsatisfiable": "ScheduleAnyway"},
        {"maxSkew": 2, "topologyKey": "kubernetes.io/hostname", "whenUnsatisfiable": "DoNotSchedule",
         "labelSelector": {"matchLabels": {"team": "portraits"}}},
    ],
    "podLabels": {"team": "portraits", "cost-center": "ml-42"},
    "podAnnotations": {"example.com/owner": "alice"},
}


def _finetune(spec_changes: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "sdxl.io/v1alpha1", "kind": "SDXLFineTune",
            "metadata": {"name": "alice", "namespace": "team-a", "uid": UID},
            "spec": {"instanceImages": "builtin:sample-subject", "instancePrompt": "a photo of sks person",
                     **spec_changes}}


def _training_job(spec_changes: dict[str, Any], settings: OperatorSettings = SETTINGS) -> dict[str, Any]:
    owner = _finetune(spec_changes)
    spec = resolved_finetune_spec(owner["spec"], name="alice", namespace="team-a", uid=UID,
                                  artifact_store="s3://store/prefix")
    return build_training_job(owner, spec, settings)


def _deployment_owner(spec_changes: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "sdxl.io/v1alpha1", "kind": "SDXLDeployment",
            "metadata": {"name": "alice", "namespace": "team-a", "uid": UID, "generation": 1},
            "spec": {"fineTune": "alice-v1", "accelerator": "neuron", "replicas": 2, **spec_changes}}


def _resolved(owner: dict[str, Any]) -> dict[str, Any]:
    return resolve_deployment_spec(owner["spec"], SOURCE, name="alice", namespace="team-a", uid=UID)


def _scheduled_pod(pod: dict[str, Any], labels: dict[str, str]) -> dict[str, Any]:
    """``pod`` (a template's spec) with SCHEDULING applied: spread constraints count the pod's labels."""
    expected = copy.deepcopy(pod)
    expected["affinity"] = ZONE_AFFINITY
    expected["priorityClassName"] = "batch-low"
    zone, host = copy.deepcopy(SCHEDULING["topologySpreadConstraints"])
    expected["topologySpreadConstraints"] = [{**zone, "labelSelector": {"matchLabels": labels}}, host]
    return expected


def _assert_valid(manifest: dict[str, Any]) -> None:
    kubernetes_validate.validate(manifest, KUBERNETES_VERSION, strict=True)


def test_training_pod_takes_the_scheduling_and_is_never_disrupted_by_karpenter() -> None:
    plain = _training_job({})
    template = plain["spec"]["template"]
    assert template["metadata"]["annotations"] == {"karpenter.sh/do-not-disrupt": "true"}
    scheduled = _training_job({"scheduling": SCHEDULING})
    expected = copy.deepcopy(plain)
    labels = template["metadata"]["labels"]
    expected["spec"]["template"] = {
        "metadata": {"labels": {"team": "portraits", "cost-center": "ml-42", **labels},
                     "annotations": {"karpenter.sh/do-not-disrupt": "true", "example.com/owner": "alice"}},
        "spec": _scheduled_pod(template["spec"], labels),
    }
    assert scheduled == expected
    _assert_valid(scheduled)


def test_a_spec_may_let_karpenter_move_its_pods() -> None:
    job = _training_job({"scheduling": {"podAnnotations": {"karpenter.sh/do-not-disrupt": "false"}}})
    assert job["spec"]["template"]["metadata"]["annotations"] == {"karpenter.sh/do-not-disrupt": "false"}


def test_workload_pull_secrets_reach_every_workload_pod() -> None:
    owner = _deployment_owner({})
    resolved = _resolved(owner)
    pods = [
        (_training_job({}, SETTINGS), _training_job({}, PULLING)),
        (build_compile_job(owner, resolved, KEY, SETTINGS), build_compile_job(owner, resolved, KEY, PULLING)),
        (build_inference_deployment(owner, resolved, key=KEY, artifact=ARTIFACT, settings=SETTINGS),
         build_inference_deployment(owner, resolved, key=KEY, artifact=ARTIFACT, settings=PULLING)),
    ]
    for plain, pulling in pods:
        assert "imagePullSecrets" not in plain["spec"]["template"]["spec"]
        expected = copy.deepcopy(plain)
        expected["spec"]["template"]["spec"]["imagePullSecrets"] = [{"name": "regcred"}, {"name": "mirror-cred"}]
        if plain["kind"] == "Deployment":  # the template changed: so does the hash the controller compares
            expected["metadata"]["annotations"]["sdxl.io/template-hash"] = template_hash(expected["spec"])
        assert pulling == expected
        _assert_valid(pulling)


def test_compile_pod_takes_the_scheduling_and_is_never_disrupted_by_karpenter() -> None:
    plain_owner, owner = _deployment_owner({}), _deployment_owner({"scheduling": SCHEDULING})
    plain = build_compile_job(plain_owner, _resolved(plain_owner), KEY, SETTINGS)
    template = plain["spec"]["template"]
    assert template["metadata"]["annotations"]["karpenter.sh/do-not-disrupt"] == "true"
    scheduled = build_compile_job(owner, _resolved(owner), KEY, SETTINGS)
    expected = copy.deepcopy(plain)
    labels = template["metadata"]["labels"]
    expected["spec"]["template"] = {
        "metadata": {"labels": {"team": "portraits", "cost-center": "ml-42", **labels},
                     "annotations": {"karpenter.sh/do-not-disrupt": "true", "example.com/owner": "alice",
                                     **plain["metadata"]["annotations"]}},
        "spec": _scheduled_pod(template["spec"], labels),
    }
    assert scheduled == expected
    _assert_valid(scheduled)


def test_server_pods_take_the_scheduling_and_stay_movable() -> None:
    plain_owner, owner = _deployment_owner({}), _deployment_owner({"scheduling": SCHEDULING})
    plain = build_inference_deployment(plain_owner, _resolved(plain_owner), key=KEY, artifact=ARTIFACT,
                                       settings=SETTINGS)
    template = plain["spec"]["template"]
    assert "karpenter.sh/do-not-disrupt" not in template["metadata"]["annotations"]
    scheduled = build_inference_deployment(owner, _resolved(owner), key=KEY, artifact=ARTIFACT, settings=SETTINGS)
    expected = copy.deepcopy(plain)
    labels = template["metadata"]["labels"]
    expected["spec"]["template"] = {
        # The server's spec (its ConfigMap) holds the scheduling too: its hash in the template follows.
        "metadata": {"labels": {"team": "portraits", "cost-center": "ml-42", **labels},
                     "annotations": {"example.com/owner": "alice", **template["metadata"]["annotations"],
                                     SPEC_HASH: server_spec_hash(_resolved(owner))}},
        "spec": _scheduled_pod(template["spec"], labels),
    }
    # The selector stays the operator's: added pod labels never change which pods the Deployment owns.
    assert expected["spec"]["selector"] == plain["spec"]["selector"]
    expected["metadata"]["annotations"]["sdxl.io/template-hash"] = template_hash(expected["spec"])
    assert scheduled == expected
    _assert_valid(scheduled)


def test_the_operators_labels_and_annotations_win() -> None:
    metadata = pod_template_metadata(
        {"app.kubernetes.io/name": "sdxl-server"}, {"sdxl.io/compile-key": KEY},
        {"podLabels": {"app.kubernetes.io/name": "mine", "team": "a"},
         "podAnnotations": {"sdxl.io/compile-key": "forged", "note": "x"}},
        do_not_disrupt=False)
    assert metadata == {"labels": {"app.kubernetes.io/name": "sdxl-server", "team": "a"},
                        "annotations": {"sdxl.io/compile-key": KEY, "note": "x"}}
    assert pod_template_metadata({"a": "b"}, {}, None, do_not_disrupt=False) == {"labels": {"a": "b"}}
