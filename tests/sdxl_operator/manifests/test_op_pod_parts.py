"""Pod building blocks: PVC mounts, labels and the secure defaults every workload pod gets."""

from __future__ import annotations

from sdxl_operator.core import labels
from sdxl_operator.manifests import pod_security, volumes


def test_a_claim_used_for_input_and_output_is_mounted_once_writable() -> None:
    mounted, mounts = volumes.pvc_volumes(["pvc://data/photos", "pvc://models/sdxl", "s3://b/x", None],
                                          ["pvc://data/out"])
    assert mounted == [
        {"name": "pvc-data", "persistentVolumeClaim": {"claimName": "data"}},
        {"name": "pvc-models", "persistentVolumeClaim": {"claimName": "models", "readOnly": True}},
    ]
    assert mounts == [
        {"name": "pvc-data", "mountPath": "/mnt/pvc/data"},
        {"name": "pvc-models", "mountPath": "/mnt/pvc/models", "readOnly": True},
    ]


def test_long_claim_names_give_valid_volume_names() -> None:
    claim = "c" * 63
    mounted, mounts = volumes.pvc_volumes([f"pvc://{claim}/x"], [])
    assert len(mounted[0]["name"]) <= 63 and mounts[0]["mountPath"] == f"/mnt/pvc/{claim}"


def test_hf_token_only_when_configured() -> None:
    assert volumes.hf_token_env(None) == []
    assert volumes.hf_token_env("hf")[0]["valueFrom"]["secretKeyRef"] == {"name": "hf", "key": "token", "optional": True}


def test_secure_defaults() -> None:
    fields = pod_security.secure_pod_fields()
    assert fields["automountServiceAccountToken"] is False
    assert fields["securityContext"]["runAsNonRoot"] is True
    assert fields["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    container = pod_security.container_security_context()
    assert container["readOnlyRootFilesystem"] and not container["allowPrivilegeEscalation"]
    assert container["capabilities"] == {"drop": ["ALL"]}
    writable = {mount["mountPath"] for mount in pod_security.scratch_mounts()}
    assert {"/tmp", "/var/cache/sdxl"} == writable
    env = {item["name"]: item["value"] for item in pod_security.scratch_env()}
    assert all(value.startswith(tuple(writable)) for value in env.values())


def test_labels() -> None:
    assert labels.finetune_labels("ft") == {
        "app.kubernetes.io/managed-by": "sdxl-operator", "app.kubernetes.io/name": "sdxl-trainer",
        "app.kubernetes.io/instance": "ft", "sdxl.io/finetune": "ft"}
    assert labels.deployment_labels("d", labels.SERVER)["sdxl.io/deployment"] == "d"
    assert labels.selector({"b": "2", "a": "1"}) == "a=1,b=2"
    assert labels.job_pods_selector("ft-train") == "batch.kubernetes.io/job-name=ft-train"
