"""The administrator's limits, as pure functions: store prefixes per namespace, reserved namespaces,
placement keys, image caps, one output per run, the workload identity per namespace, the servers'
NetworkPolicy, and the settings that carry them."""

from __future__ import annotations

from typing import Any

import pytest

from sdxl_operator.core.settings import OperatorSettings, SettingsError
from sdxl_operator.handlers.workload_prerequisites import build_workload_service_account
from sdxl_operator.manifests.inference_network_policy import build_network_policy
from sdxl_operator.spec.admin_policy import deployment_policy_errors, finetune_policy_errors
from sdxl_operator.spec.placement_limits import placement_errors
from sdxl_operator.spec.reserved_namespaces import is_reserved
from sdxl_operator.spec.shared_output import output_in_use
from sdxl_operator.spec.store_tenancy import namespace_prefix, uri_errors

S3_STORE = "s3://sdxl-artifacts/store"
PVC_STORE = "pvc://sdxl-artifacts/store"
ALLOWED = {"team-a": ["s3://sdxl-artifacts/shared-models/"], "research-*": ["s3://sdxl-artifacts/datasets/"]}


@pytest.mark.parametrize(
    ("store", "namespace", "uri", "refused"),
    [
        # The namespace's own part of the store, and where an unset output goes.
        (S3_STORE, "team-a", "s3://sdxl-artifacts/store/finetunes/team-a/alice/out", False),
        (S3_STORE, "team-a", "s3://sdxl-artifacts/store/finetunes/team-a", False),
        (PVC_STORE, "team-a", "pvc://sdxl-artifacts/store/finetunes/team-a/photos/alice", False),
        # Another tenant's part, the shared compile cache, the store's root, elsewhere in its bucket.
        (S3_STORE, "team-a", "s3://sdxl-artifacts/store/finetunes/team-b/bob/lora/", True),
        (S3_STORE, "team-a", "s3://sdxl-artifacts/store/finetunes/team-ab/x", True),
        (S3_STORE, "team-a", "s3://sdxl-artifacts/store/compiled/" + "a" * 64, True),
        (S3_STORE, "team-a", "s3://sdxl-artifacts/store", True),
        (S3_STORE, "team-a", "s3://sdxl-artifacts/other-prefix/photos", True),
        (PVC_STORE, "team-a", "pvc://sdxl-artifacts/store/finetunes/team-b/x", True),
        # Spellings that would reach another tenant's keys are seen through or refused.
        (S3_STORE, "team-a", "s3://sdxl-artifacts/store//finetunes/./team-b/x", True),
        (S3_STORE, "team-a", "s3://sdxl-artifacts/store/finetunes/team-a/../team-b/x", True),
        (S3_STORE, "team-a", "s3://my-own-bucket/../x", True),
        # What the administrator allowed, for the namespace or a glob of namespaces.
        (S3_STORE, "team-a", "s3://sdxl-artifacts/shared-models/sdxl-base", False),
        (S3_STORE, "team-b", "s3://sdxl-artifacts/shared-models/sdxl-base", True),
        (S3_STORE, "research-x", "s3://sdxl-artifacts/datasets/faces", False),
        # Outside the store's bucket or claim: the cloud identity or the namespace's own claim decides.
        (S3_STORE, "team-a", "s3://team-a-photos/alice", False),
        (S3_STORE, "team-a", "pvc://sdxl-artifacts/store/finetunes/team-b/x", False),
        (PVC_STORE, "team-a", "pvc://photos/alice", False),
        (PVC_STORE, "team-a", "s3://sdxl-artifacts/store/finetunes/team-b/x", False),
        # Hub ids and embedded names are not storage.
        (S3_STORE, "team-a", "stabilityai/stable-diffusion-xl-base-1.0", False),
        (S3_STORE, "team-a", "builtin:sample-subject", False),
        # A local store: its own path is partitioned, other paths of the pod are not storage.
        ("/data/store", "team-a", "/data/store/finetunes/team-b/x", True),
        ("/data/store", "team-a", "/data/store/finetunes/team-a/x", False),
        ("/data/store", "team-a", "/models/sdxl", False),
    ],
)
def test_store_uris_stay_in_the_namespaces_prefix(store: str, namespace: str, uri: str, refused: bool) -> None:
    errors = uri_errors({"spec.output": uri}, namespace=namespace, artifact_store=store, allowed=ALLOWED)
    assert bool(errors) == refused, errors


def test_a_refusal_names_the_field_the_prefix_allowed_and_how_to_allow_more() -> None:
    [error] = uri_errors({"spec.instanceImages": "s3://sdxl-artifacts/store/finetunes/team-b/photos"},
                         namespace="team-a", artifact_store=S3_STORE, allowed=ALLOWED)
    assert error.startswith("spec.instanceImages: s3://sdxl-artifacts/store/finetunes/team-b/photos is in the "
                            "operator's artifact store")
    assert "s3://sdxl-artifacts/store/finetunes/team-a/" in error
    assert "s3://sdxl-artifacts/shared-models/" in error  # what the administrator also allowed
    assert "tenancy.allowedPrefixes" in error and "namespace team-a" in error


def test_the_default_output_is_inside_the_namespace_prefix() -> None:
    from sdxl_operator.spec.resolved_spec import default_output

    output = default_output(S3_STORE, "team-a", "alice", "0123456789")
    assert output.startswith(namespace_prefix(S3_STORE, "team-a"))
    assert uri_errors({"spec.output": output}, namespace="team-a", artifact_store=S3_STORE, allowed={}) == []


def test_every_uri_field_of_both_kinds_is_checked() -> None:
    settings = OperatorSettings(artifact_store=S3_STORE)
    foreign = "s3://sdxl-artifacts/store/finetunes/team-b/x"
    finetune = {"output": foreign, "instanceImages": foreign, "baseModel": foreign, "vae": foreign,
                "priorPreservation": {"classImages": foreign},
                "quality": {"clipModel": foreign, "dinoModel": foreign}}
    fields = [error.split(":", 1)[0] for error in finetune_policy_errors(finetune, "team-a", settings)]
    assert fields == ["spec.output", "spec.instanceImages", "spec.baseModel", "spec.vae",
                      "spec.priorPreservation.classImages", "spec.quality.clipModel", "spec.quality.dinoModel"]
    # A hub id or a folder in the image is no store location: nothing to check.
    hub = {"quality": {"clipModel": "openai/clip-vit-base-patch32", "dinoModel": "/models/dino"}}
    assert finetune_policy_errors(hub, "team-a", settings) == []
    fields = [error.split(":", 1)[0] for error in
              deployment_policy_errors({"lora": foreign, "baseModel": foreign}, "team-a", settings)]
    assert fields == ["spec.lora", "spec.baseModel"]


@pytest.mark.parametrize(
    ("namespace", "patterns", "reserved"),
    [("kube-system", ("kube-*",), True), ("kube-public", ("kube-*",), True), ("team-a", ("kube-*",), False),
     ("my-kube-x", ("kube-*",), False), ("istio-system", ("kube-*", "istio-system"), True),
     ("kube-system", (), False), (None, ("*",), False)],
)
def test_reserved_namespaces_are_globs(namespace: str | None, patterns: tuple[str, ...], reserved: bool) -> None:
    assert is_reserved(namespace, patterns) is reserved


DEFAULTS = OperatorSettings()


@pytest.mark.parametrize(
    ("resources", "refused_fields"),
    [
        ({"tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
          "nodeSelector": {"node.kubernetes.io/instance-type": "g5.2xlarge", "karpenter.sh/nodepool": "gpu"}}, []),
        ({"tolerations": [{"key": "aws.amazon.com/neuron", "operator": "Exists"}]}, []),
        ({"tolerations": [{"key": "node-role.kubernetes.io/control-plane", "operator": "Exists",
                           "effect": "NoSchedule"}]}, ["spec.resources.tolerations[0]"]),
        ({"tolerations": [{"operator": "Exists"}]}, ["spec.resources.tolerations[0]"]),
        ({"tolerations": [{"key": "dedicated", "operator": "Equal", "value": "payments"}]},
         ["spec.resources.tolerations[0]"]),
        ({"nodeSelector": {"node-role.kubernetes.io/control-plane": ""}},
         ["spec.resources.nodeSelector.node-role.kubernetes.io/control-plane"]),
        ({"nodeSelector": {"kubernetes.io/hostname": "node-7"}}, ["spec.resources.nodeSelector.kubernetes.io/hostname"]),
        ({}, []),
    ],
)
def test_placement_keys_outside_the_allowed_lists_are_refused(resources: dict[str, Any],
                                                              refused_fields: list[str]) -> None:
    errors = placement_errors(resources, toleration_keys=DEFAULTS.allowed_toleration_keys,
                              node_selector_keys=DEFAULTS.allowed_node_selector_keys)
    assert [error.split(": ", 1)[0] for error in errors] == refused_fields


def test_a_refused_toleration_is_named_with_the_allowed_keys_and_the_helm_value() -> None:
    [error] = placement_errors({"tolerations": [{"key": "node-role.kubernetes.io/control-plane",
                                                 "operator": "Exists"}]},
                               toleration_keys=("*",), node_selector_keys=())
    # The control plane's keys stay refused even when the administrator allows every key.
    assert "toleration key node-role.kubernetes.io/control-plane is not allowed" in error
    assert "placement.allowedTolerationKeys" in error


def test_class_images_over_the_cap_are_refused_and_the_cap_is_configurable() -> None:
    spec = {"priorPreservation": {"enabled": True, "numClassImages": 1001}}
    [error] = finetune_policy_errors(spec, "team-a", OperatorSettings())
    assert error.startswith("spec.priorPreservation.numClassImages: at most 1000 in this cluster, got 1001")
    assert "limits.maxImages" in error
    assert finetune_policy_errors(spec, "team-a", OperatorSettings(max_images=2000)) == []
    assert finetune_policy_errors({"priorPreservation": {"numClassImages": 1000}}, "team-a", OperatorSettings()) == []


def _finetune(name: str, output: str | None, phase: str | None = None, created: str = "2026-01-01T00:00:00Z"
              ) -> dict[str, Any]:
    spec = {"output": output} if output else {}
    return {"metadata": {"name": name, "creationTimestamp": created}, "spec": spec,
            "status": {"phase": phase} if phase else {}}


@pytest.mark.parametrize(
    ("other", "conflict"),
    [
        (_finetune("old", "s3://b/out/alice", "Training"), True),
        (_finetune("old", "s3://b/out/alice/", "Succeeded"), True),  # the same folder, spelled with a slash
        (_finetune("old", "s3://b/out/alice"), True),  # pending
        (_finetune("old", "s3://b/out/alice", "Failed"), False),  # a failed run does not hold its output
        (_finetune("old", "s3://b/out/bob", "Training"), False),
        (_finetune("old", None, "Training"), False),
        (_finetune("young", "s3://b/out/alice", "Training", created="2026-02-01T00:00:00Z"), False),
    ],
)
def test_an_output_held_by_an_earlier_finetune_is_refused(other: dict[str, Any], conflict: bool) -> None:
    me = _finetune("new", "s3://b/out/alice", created="2026-01-15T00:00:00Z")
    error = output_in_use(me, [other, me])
    assert (error is not None) == conflict, error
    if error:
        assert error.startswith("spec.output: s3://b/out/alice is already the output of SDXLFineTune old")


def test_of_two_created_together_exactly_one_keeps_the_output() -> None:
    first, second = _finetune("a", "s3://b/o"), _finetune("b", "s3://b/o")
    assert output_in_use(first, [first, second]) is None
    assert output_in_use(second, [first, second]) is not None
    assert output_in_use(_finetune("c", None), [first]) is None  # unset: the default output is per object


def test_the_workload_account_takes_its_namespaces_own_identity() -> None:
    settings = OperatorSettings(
        workload_service_account="sdxl-workload",
        workload_service_account_annotations={"eks.amazonaws.com/role-arn": "arn:aws:iam::1:role/shared",
                                              "team": "platform"},
        workload_service_account_namespace_annotations={
            "team-a": {"eks.amazonaws.com/role-arn": "arn:aws:iam::1:role/sdxl-team-a"}})
    team_a = build_workload_service_account("team-a", settings)
    other = build_workload_service_account("team-b", settings)
    assert team_a is not None and other is not None
    assert team_a["metadata"]["annotations"] == {"eks.amazonaws.com/role-arn": "arn:aws:iam::1:role/sdxl-team-a",
                                                 "team": "platform"}
    assert other["metadata"]["annotations"]["eks.amazonaws.com/role-arn"] == "arn:aws:iam::1:role/shared"


def test_the_network_policy_admits_the_namespace_and_the_listed_sources_on_the_server_port() -> None:
    owner = {"apiVersion": "sdxl.io/v1alpha1", "kind": "SDXLDeployment",
             "metadata": {"name": "alice", "namespace": "team-a", "uid": "u-1"}}
    ingress = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}}}
    policy = build_network_policy(owner, [ingress])
    labels = {"app.kubernetes.io/managed-by": "sdxl-operator", "app.kubernetes.io/name": "sdxl-server",
              "app.kubernetes.io/instance": "alice", "sdxl.io/deployment": "alice"}
    assert policy == {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": "alice", "namespace": "team-a", "labels": labels,
                     "ownerReferences": [{"apiVersion": "sdxl.io/v1alpha1", "kind": "SDXLDeployment", "name": "alice",
                                          "uid": "u-1", "controller": True, "blockOwnerDeletion": True}]},
        "spec": {
            "podSelector": {"matchLabels": labels},
            "policyTypes": ["Ingress"],
            "ingress": [{"from": [{"podSelector": {}}, ingress], "ports": [{"protocol": "TCP", "port": 8080}]}],
        },
    }


def test_tenancy_settings_come_from_the_environment() -> None:
    settings = OperatorSettings.from_env({
        "SDXL_TENANCY_ALLOWED_PREFIXES": '{"team-a": ["s3://shared-models/"]}',
        "SDXL_RESERVED_NAMESPACES": '["kube-*", "istio-system"]',
        "SDXL_ALLOWED_TOLERATION_KEYS": '["nvidia.com/gpu"]',
        "SDXL_ALLOWED_NODE_SELECTOR_KEYS": "[]",
        "SDXL_MAX_IMAGES": "50",
        "SDXL_NETWORK_POLICY": "false",
        "SDXL_NETWORK_POLICY_SOURCES": '[{"ipBlock": {"cidr": "10.0.0.0/16"}}]',
        "SDXL_WORKLOAD_SERVICE_ACCOUNT_NAMESPACE_ANNOTATIONS": '{"team-a": {"k": "v"}}',
    })
    assert settings.tenancy_allowed_prefixes == {"team-a": ("s3://shared-models/",)}
    assert settings.reserved_namespaces == ("kube-*", "istio-system")
    assert settings.allowed_toleration_keys == ("nvidia.com/gpu",)
    assert settings.allowed_node_selector_keys == ()
    assert settings.max_images == 50 and settings.network_policy is False
    assert settings.network_policy_sources == ({"ipBlock": {"cidr": "10.0.0.0/16"}},)
    assert settings.workload_service_account_namespace_annotations == {"team-a": {"k": "v"}}
    defaults = OperatorSettings.from_env({})
    assert defaults.reserved_namespaces == ("kube-*",) and defaults.max_images == 1000 and defaults.network_policy
    assert "node-role.kubernetes.io/control-plane" not in defaults.allowed_toleration_keys


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("SDXL_TENANCY_ALLOWED_PREFIXES", '{"team-a": "s3://x/"}', "SDXL_TENANCY_ALLOWED_PREFIXES: expected"),
        ("SDXL_TENANCY_ALLOWED_PREFIXES", '{"team-a": ["shared-models/"]}', "s3:// or pvc:// prefixes"),
        ("SDXL_RESERVED_NAMESPACES", '"kube-*"', "SDXL_RESERVED_NAMESPACES: expected a JSON list"),
        ("SDXL_ALLOWED_TOLERATION_KEYS", '[""]', "SDXL_ALLOWED_TOLERATION_KEYS: expected a JSON list"),
        ("SDXL_MAX_IMAGES", "0", "SDXL_MAX_IMAGES: must be at least 1"),
        ("SDXL_NETWORK_POLICY_SOURCES", '[{"namespace": "x"}]', "SDXL_NETWORK_POLICY_SOURCES: expected"),
        ("SDXL_WORKLOAD_SERVICE_ACCOUNT_NAMESPACE_ANNOTATIONS", '{"team-a": "arn"}', "namespace: {annotation"),
    ],
)
def test_malformed_tenancy_settings_name_the_variable(name: str, value: str, message: str) -> None:
    with pytest.raises(SettingsError, match=message.replace("*", r"\*").replace("{", r"\{")):
        OperatorSettings.from_env({name: value})


def test_compiles_share_the_stores_cache_or_keep_one_per_namespace() -> None:
    from sdxl_operator.manifests.compile_job import build_compile_job

    owner = {"apiVersion": "sdxl.io/v1alpha1", "kind": "SDXLDeployment",
             "metadata": {"name": "alice", "namespace": "team-a", "uid": "u-1"}}
    resolved = {"accelerator": "cpu", "baseModel": "builtin:tiny", "lora": "s3://b/l", "loraScale": 1.0}
    key = "c" * 64
    for shared, store in ((True, S3_STORE), (False, f"{S3_STORE}/finetunes/team-a")):
        job = build_compile_job(owner, resolved, key, OperatorSettings(artifact_store=S3_STORE,
                                                                       shared_compile_cache=shared))
        args = job["spec"]["template"]["spec"]["containers"][0]["args"]
        assert args[args.index("--store") + 1] == store
        assert job["metadata"]["annotations"]["sdxl.io/compiled-artifact"] == f"{store}/compiled/{key}"
