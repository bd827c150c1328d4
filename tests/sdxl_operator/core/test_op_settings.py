"""Operator settings come from environment variables, with clear errors for malformed values."""

from __future__ import annotations

import pytest

from sdxl_operator.core.settings import OperatorSettings, SettingsError


def test_defaults_when_nothing_is_set() -> None:
    settings = OperatorSettings.from_env({})
    assert settings == OperatorSettings()
    assert settings.artifact_store == "pvc://sdxl-artifacts/store"
    assert settings.train_deadline_seconds == 86400 and settings.compile_deadline_seconds == 14400
    assert settings.train_backoff_limit == 2
    assert settings.status_interval_seconds == 10 and settings.pending_grace_seconds == 120
    assert settings.hf_token_secret is None and settings.workload_service_account is None
    assert settings.workload_image_pull_secrets == () and settings.allowed_priority_classes == ()


def test_every_variable_is_read() -> None:
    env = {
        "SDXL_IMAGE_TRAIN": "reg/train:1",
        "SDXL_IMAGE_NEURON": "reg/neuron:1",
        "SDXL_IMAGE_NVIDIA": "reg/gpu:1",
        "SDXL_IMAGE_CPU": "reg/cpu:1",
        "SDXL_IMAGE_PULL_POLICY": "Always",
        "SDXL_TRAIN_NODE_SELECTOR": '{"gpu": "a10g"}',
        "SDXL_TRAIN_TOLERATIONS": '[{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]',
        "SDXL_COMPILE_NODE_SELECTOR": '{"role": "compile"}',
        "SDXL_COMPILE_TOLERATIONS": '[{"key": "compile", "operator": "Exists"}]',
        "SDXL_NEURON_NODE_SELECTOR": '{"node.kubernetes.io/instance-type": "inf2.8xlarge"}',
        "SDXL_NEURON_TOLERATIONS": '[{"key": "aws.amazon.com/neuron", "operator": "Exists"}]',
        "SDXL_NVIDIA_NODE_SELECTOR": '{"gpu": "l4"}',
        "SDXL_NVIDIA_TOLERATIONS": "[]",
        "SDXL_COMPILE_ON_NEURON": "true",
        "SDXL_ARTIFACT_STORE": "s3://bucket/prefix/",
        "SDXL_HF_TOKEN_SECRET": "hf",
        "SDXL_WORKLOAD_SERVICE_ACCOUNT": "sdxl-workload",
        "SDXL_TRAIN_DEADLINE_SECONDS": "3600",
        "SDXL_COMPILE_DEADLINE_SECONDS": "7200",
        "SDXL_TRAIN_BACKOFF_LIMIT": "0",
        "SDXL_STATUS_INTERVAL_SECONDS": "0.5",
        "SDXL_PENDING_GRACE_SECONDS": "30",
        "SDXL_CREATE_WORKLOAD_SERVICE_ACCOUNT": "false",
        "SDXL_WORKLOAD_SERVICE_ACCOUNT_ANNOTATIONS": '{"eks.amazonaws.com/role-arn": "arn:aws:iam::1:role/r"}',
        "SDXL_FINISHED_JOB_TTL_SECONDS": "600",
        "SDXL_POD_NAME": "sdxl-operator-7d9f-abcde",
        "SDXL_WORKLOAD_IMAGE_PULL_SECRETS": '["regcred", "mirror.cred"]',
        "SDXL_ALLOWED_PRIORITY_CLASSES": '["batch-*"]',
    }
    settings = OperatorSettings.from_env(env)
    assert settings == OperatorSettings(
        image_train="reg/train:1",
        image_neuron="reg/neuron:1",
        image_nvidia="reg/gpu:1",
        image_cpu="reg/cpu:1",
        image_pull_policy="Always",
        train_node_selector={"gpu": "a10g"},
        train_tolerations=({"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},),
        compile_node_selector={"role": "compile"},
        compile_tolerations=({"key": "compile", "operator": "Exists"},),
        neuron_node_selector={"node.kubernetes.io/instance-type": "inf2.8xlarge"},
        neuron_tolerations=({"key": "aws.amazon.com/neuron", "operator": "Exists"},),
        nvidia_node_selector={"gpu": "l4"},
        nvidia_tolerations=(),
        compile_on_neuron=True,
        artifact_store="s3://bucket/prefix",
        hf_token_secret="hf",
        workload_service_account="sdxl-workload",
        train_deadline_seconds=3600,
        compile_deadline_seconds=7200,
        train_backoff_limit=0,
        status_interval_seconds=0.5,
        pending_grace_seconds=30,
        create_workload_service_account=False,
        workload_service_account_annotations={"eks.amazonaws.com/role-arn": "arn:aws:iam::1:role/r"},
        finished_job_ttl_seconds=600,
        pod_name="sdxl-operator-7d9f-abcde",
        workload_image_pull_secrets=("regcred", "mirror.cred"),
        allowed_priority_classes=("batch-*",),
    )


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("SDXL_TRAIN_NODE_SELECTOR", "{gpu: a10g}", r"SDXL_TRAIN_NODE_SELECTOR: not valid JSON"),
        ("SDXL_TRAIN_NODE_SELECTOR", '["gpu"]', r"SDXL_TRAIN_NODE_SELECTOR: expected a JSON object"),
        ("SDXL_NEURON_NODE_SELECTOR", '{"a": 1}', r"SDXL_NEURON_NODE_SELECTOR: expected a JSON object of string"),
        ("SDXL_TRAIN_TOLERATIONS", '{"key": "x"}', r"SDXL_TRAIN_TOLERATIONS: expected a JSON list"),
        ("SDXL_COMPILE_TOLERATIONS", '["x"]', r"SDXL_COMPILE_TOLERATIONS\[0\]: expected a toleration object"),
        ("SDXL_NVIDIA_TOLERATIONS", '[{"kee": "x"}]', r"SDXL_NVIDIA_TOLERATIONS\[0\]: unknown toleration field\(s\) kee"),
        ("SDXL_TRAIN_DEADLINE_SECONDS", "1d", r"SDXL_TRAIN_DEADLINE_SECONDS: expected a whole number"),
        ("SDXL_TRAIN_BACKOFF_LIMIT", "-1", r"SDXL_TRAIN_BACKOFF_LIMIT: must be at least 0"),
        ("SDXL_STATUS_INTERVAL_SECONDS", "0", r"SDXL_STATUS_INTERVAL_SECONDS: must be greater than 0"),
        ("SDXL_PENDING_GRACE_SECONDS", "soon", r"SDXL_PENDING_GRACE_SECONDS: expected a number"),
        ("SDXL_COMPILE_ON_NEURON", "maybe", r"SDXL_COMPILE_ON_NEURON: expected true or false"),
        ("SDXL_IMAGE_PULL_POLICY", "always", r"SDXL_IMAGE_PULL_POLICY: must be one of"),
        ("SDXL_ARTIFACT_STORE", "pvc:///x", r"SDXL_ARTIFACT_STORE: a pvc:// URI needs a claim"),
        ("SDXL_ARTIFACT_STORE", "s3://", r"SDXL_ARTIFACT_STORE: an s3:// URI needs a bucket"),
        ("SDXL_ARTIFACT_STORE", "relative/dir", r"SDXL_ARTIFACT_STORE: expected s3://"),
        ("SDXL_WORKLOAD_SERVICE_ACCOUNT_ANNOTATIONS", '{"role": 1}',
         r"SDXL_WORKLOAD_SERVICE_ACCOUNT_ANNOTATIONS: expected a JSON object of strings"),
        ("SDXL_CREATE_WORKLOAD_SERVICE_ACCOUNT", "sometimes", r"SDXL_CREATE_WORKLOAD_SERVICE_ACCOUNT: expected true"),
        ("SDXL_FINISHED_JOB_TTL_SECONDS", "0", r"SDXL_FINISHED_JOB_TTL_SECONDS: must be at least 60"),
        ("SDXL_KEDA_ENABLED", "on", r"SDXL_KEDA_ENABLED: expected true or false"),
        ("SDXL_WORKLOAD_IMAGE_PULL_SECRETS", '"regcred"', r"SDXL_WORKLOAD_IMAGE_PULL_SECRETS: expected a JSON list"),
        ("SDXL_WORKLOAD_IMAGE_PULL_SECRETS", '["Reg Cred"]', r"SDXL_WORKLOAD_IMAGE_PULL_SECRETS: expected a JSON list"),
        ("SDXL_ALLOWED_PRIORITY_CLASSES", '[""]', r"SDXL_ALLOWED_PRIORITY_CLASSES: expected a JSON list"),
        ("SDXL_KEDA_PROMETHEUS_ADDRESS", "prometheus:9090", r"SDXL_KEDA_PROMETHEUS_ADDRESS: expected an http://"),
    ],
)
def test_malformed_values_name_the_variable(name: str, value: str, message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        OperatorSettings.from_env({name: value})


def test_keda_is_off_by_default_and_needs_the_prometheus_server_it_queries() -> None:
    assert OperatorSettings.from_env({}).keda is False
    settings = OperatorSettings.from_env({"SDXL_KEDA_ENABLED": "true",
                                          "SDXL_KEDA_PROMETHEUS_ADDRESS": "http://prometheus.monitoring.svc:9090/"})
    assert settings.keda is True and settings.keda_prometheus_address == "http://prometheus.monitoring.svc:9090"
    with pytest.raises(SettingsError, match="SDXL_KEDA_PROMETHEUS_ADDRESS: required when SDXL_KEDA_ENABLED is true"):
        OperatorSettings.from_env({"SDXL_KEDA_ENABLED": "true"})


def test_empty_values_mean_default() -> None:
    assert OperatorSettings.from_env({"SDXL_TRAIN_TOLERATIONS": " ", "SDXL_HF_TOKEN_SECRET": ""}) == OperatorSettings()


def test_the_variable_list_is_what_the_module_reads_and_documents() -> None:
    import re
    from pathlib import Path

    from sdxl_operator.core import settings

    source = Path(settings.__file__).read_text()
    body = source.split("class OperatorSettings", 1)[1]
    read = set(re.findall(r'"(SDXL_[A-Z_]+)"', body))
    documented = set(re.findall(r"^(SDXL_[A-Z_]+)\s", settings.__doc__ or "", re.MULTILINE))
    assert read == documented == set(settings.ENVIRONMENT_VARIABLES)
