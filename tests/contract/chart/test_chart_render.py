"""The chart lints, renders valid Kubernetes objects for every supported value set, and hands the
operator settings it can parse (operator/sdxl_operator/core/settings.py reads the same variables)."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from sdxl_operator.core import labels
from sdxl_operator.core.settings import OperatorSettings

REPO_ROOT = Path(__file__).resolve().parents[3]
CHART_DIR = REPO_ROOT / "charts" / "sdxl-operator"
SETTINGS_SOURCE = REPO_ROOT / "operator" / "sdxl_operator" / "core" / "settings.py"
RELEASE_NAMESPACE = "sdxl-system"
# The oldest Kubernetes the chart supports (Chart.yaml kubeVersion) and the newest schema bundled.
KUBERNETES_VERSIONS = ("1.29.0", "1.37.0")
DIGEST = "sha256:" + "ab" * 32

VALUE_SETS: dict[str, dict[str, Any]] = {
    "default": {},
    "namespaced": {"watchNamespaces": ["team-a", "team-b"]},
    "cluster-wide": {"watchNamespaces": [], "workloadServiceAccount": {"extraNamespaces": ["ml", "ml-dev"]}},
    "custom-images-and-pools": {
        "images": {
            "operator": {"repository": "registry.example.com/sdxl/operator", "tag": "1.2.3", "pullPolicy": "Always"},
            "train": {"repository": "registry.example.com/sdxl/gpu", "digest": DIGEST},
            "neuron": {"repository": "registry.example.com/sdxl/neuron", "tag": "1.2.3-sdk2.26"},
            "nvidia": {"repository": "registry.example.com/sdxl/gpu", "tag": "1.2.3"},
            "cpu": {"repository": "registry.example.com/sdxl/cpu", "tag": "1.2.3"},
            "workloadPullPolicy": "Always",
            "pullSecrets": ["regcred"],
            "workloadPullSecrets": ["regcred-workloads"],
        },
        "placement": {"allowedPriorityClasses": ["batch-*"]},
        "nodePools": {
            "training": {"nodeSelector": {"karpenter.sh/nodepool": "gpu-train"}, "tolerations": []},
            "neuronServing": {
                "nodeSelector": {"karpenter.k8s.aws/instance-family": "inf2"},
                "tolerations": [{"key": "aws.amazon.com/neuron", "operator": "Exists", "effect": "NoSchedule"}],
            },
            "gpuServing": {"nodeSelector": {"node.kubernetes.io/instance-type": "g6.xlarge"}},
        },
        "compile": {
            "onNeuron": False,
            "cpuPool": {
                "nodeSelector": {"node.kubernetes.io/instance-type": "r6i.4xlarge"},
                "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "compile", "effect": "NoSchedule"}],
            },
        },
        "artifactStore": "s3://my-sdxl-bucket/artifacts",
        "hfTokenSecret": "hf-token",
        "workloadServiceAccount": {
            "name": "sdxl-runner",
            "annotations": {"eks.amazonaws.com/role-arn": "arn:aws:iam::123456789012:role/sdxl-artifacts"},
        },
        "deadlines": {"trainSeconds": 7200, "compileSeconds": 3600, "trainBackoffLimit": 5,
                      "statusIntervalSeconds": 30, "pendingGraceSeconds": 600},
        "operator": {"logLevel": "debug", "logFormat": "json", "serviceAccount": {"name": "op"}, "priorityClassName": "system-cluster-critical"},
    },
    "service-monitor": {
        "watchNamespaces": ["team-a"],
        "serviceMonitor": {"enabled": True, "interval": "15s", "labels": {"release": "kube-prometheus-stack"}},
    },
}

# kubernetes-validate bundles only the built-in APIs; the Prometheus Operator's ServiceMonitor is
# checked against this minimal schema of the fields the chart sets (from monitoring.coreos.com/v1).
SERVICE_MONITOR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"},
        "kind": {"const": "ServiceMonitor"},
        "metadata": {"type": "object", "required": ["name", "namespace"]},
        "spec": {
            "type": "object",
            "additionalProperties": False,
            "required": ["selector", "endpoints"],
            "properties": {
                "selector": {
                    "type": "object",
                    "properties": {"matchLabels": {"type": "object", "additionalProperties": {"type": "string"}}},
                },
                "namespaceSelector": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {"any": {"type": "boolean"},
                                   "matchNames": {"type": "array", "items": {"type": "string"}}},
                },
                "endpoints": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "additionalProperties": False,
                        "properties": {
                            "port": {"type": "string"},
                            "path": {"type": "string"},
                            "interval": {"type": "string", "pattern": "^(0|([0-9]+(ms|s|m|h))+)$"},
                            "scrapeTimeout": {"type": "string", "pattern": "^(0|([0-9]+(ms|s|m|h))+)$"},
                        },
                    },
                },
            },
        },
    },
}


# Kopf's peering objects: nothing but their identity (Kopf writes the status); the CRDs are crds/kopf/.
PEERING_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata"],
    "additionalProperties": False,
    "properties": {
        "apiVersion": {"const": "kopf.dev/v1"},
        "kind": {"enum": ["ClusterKopfPeering", "KopfPeering"]},
        "metadata": {"type": "object", "required": ["name"]},
    },
}
CUSTOM_SCHEMAS = {"ServiceMonitor": SERVICE_MONITOR_SCHEMA, "ClusterKopfPeering": PEERING_SCHEMA,
                  "KopfPeering": PEERING_SCHEMA}


def _validate(manifest: dict[str, Any]) -> list[str]:
    """Problems of one rendered manifest against each supported Kubernetes version (empty: valid)."""
    name = f"{manifest.get('kind')}/{manifest.get('metadata', {}).get('name')}"
    if manifest.get("kind") in CUSTOM_SCHEMAS:
        errors = jsonschema.Draft202012Validator(CUSTOM_SCHEMAS[manifest["kind"]]).iter_errors(manifest)
        return [f"{name}: {'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors]
    problems = []
    for version in KUBERNETES_VERSIONS:
        try:
            kubernetes_validate.validate(manifest, version, strict=True)
        except kubernetes_validate.ValidationError as error:
            problems.append(f"{name} (k8s {version}): {'/'.join(map(str, error.absolute_path))}: {error.message}")
    return problems


def _env(deployment: dict[str, Any]) -> dict[str, str]:
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    # Values only: SDXL_POD_NAME comes from the downward API (the pod's own name).
    return {item["name"]: item["value"] for item in container["env"] if "value" in item}


def _args(deployment: dict[str, Any]) -> list[str]:
    return list(deployment["spec"]["template"]["spec"]["containers"][0]["args"])


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_chart_lints_strictly(helm: Callable[..., Any], value_set: str, tmp_path: Path) -> None:
    values_file = tmp_path / "values.yaml"
    values_file.write_text(yaml.safe_dump(VALUE_SETS[value_set]))
    result = helm("lint", "--strict", str(CHART_DIR), "--values", str(values_file))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 chart(s) failed" in result.stdout
    assert "[WARNING]" not in result.stdout and "[ERROR]" not in result.stdout, result.stdout


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_every_rendered_manifest_is_valid_kubernetes(render: Callable[..., Any], value_set: str) -> None:
    result = render(VALUE_SETS[value_set])
    assert result.returncode == 0, result.stderr
    kinds = {m["kind"] for m in result.manifests}
    assert {"Deployment", "ServiceAccount"} <= kinds
    problems = [problem for manifest in result.manifests for problem in _validate(manifest)]
    assert problems == []


def test_validation_catches_a_broken_manifest() -> None:
    """The validator used above rejects what the API server would (so the test above can fail)."""
    broken = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "x"},
              "spec": {"replicas": "one", "selector": {}, "template": {}}}
    assert _validate(broken)
    monitor = {"apiVersion": "monitoring.coreos.com/v1", "kind": "ServiceMonitor",
               "metadata": {"name": "x", "namespace": "y"}, "spec": {"selector": {}, "endpoints": [{"prot": "http"}]}}
    assert _validate(monitor)


def test_operator_deployment_shape(render: Callable[..., Any]) -> None:
    deployment = render().one("Deployment")
    spec = deployment["spec"]
    # Two replicas in Kopf peering; a rolling update starts the new one (which takes over) before
    # stopping an old one.
    assert spec["replicas"] == 2
    assert spec["strategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}
    pod = spec["template"]["spec"]
    container = pod["containers"][0]
    # The liveness probe asks Kopf's endpoint, which the operator starts from its --liveness flag.
    liveness_flags = [a for a in container["args"] if a.startswith("--liveness=")]
    assert liveness_flags == ["--liveness=http://0.0.0.0:8080/healthz"]
    port = {p["name"]: p["containerPort"] for p in container["ports"]}[container["livenessProbe"]["httpGet"]["port"]]
    assert (port, container["livenessProbe"]["httpGet"]["path"]) == (8080, "/healthz")
    assert container["args"][:2] == ["run", "--peering=sdxl-sdxl-operator"]
    assert container["resources"]["requests"] and container["resources"]["limits"]["memory"]


def test_operator_pod_is_locked_down(render: Callable[..., Any]) -> None:
    pod = render().one("Deployment")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    container = pod["containers"][0]["securityContext"]
    assert container["allowPrivilegeEscalation"] is False
    assert container["readOnlyRootFilesystem"] is True
    assert container["capabilities"]["drop"] == ["ALL"]
    # A read-only root needs a writable /tmp.
    assert {m["mountPath"] for m in pod["containers"][0]["volumeMounts"]} == {"/tmp"}


@pytest.mark.parametrize(
    ("value_set", "expected_scope"),
    [
        ("default", ["--all-namespaces"]),
        ("cluster-wide", ["--all-namespaces"]),
        ("namespaced", ["--namespace=team-a", "--namespace=team-b"]),
        ("service-monitor", ["--namespace=team-a"]),
    ],
)
def test_watch_scope_arguments(render: Callable[..., Any], value_set: str, expected_scope: list[str]) -> None:
    args = _args(render(VALUE_SETS[value_set]).one("Deployment"))
    scope = [a for a in args if a == "--all-namespaces" or a.startswith("--namespace")]
    assert scope == expected_scope


def test_log_level_flag(render: Callable[..., Any]) -> None:
    assert "--debug" in _args(render(VALUE_SETS["custom-images-and-pools"]).one("Deployment"))
    assert not {"--debug", "--verbose", "--quiet"} & set(_args(render().one("Deployment")))


def test_env_names_are_exactly_the_operator_settings() -> None:
    """Every SDXL_* variable settings.py reads is set by the chart, and the chart sets no other."""
    read_by_operator = set(re.findall(r'"(SDXL_[A-Z0-9_]+)"', SETTINGS_SOURCE.read_text()))
    assert read_by_operator, f"no SDXL_* names found in {SETTINGS_SOURCE}"
    template = (CHART_DIR / "templates" / "deployment.yaml").read_text()
    set_by_chart = set(re.findall(r"- name: (SDXL_[A-Z0-9_]+)", template))
    assert set_by_chart == read_by_operator


def test_default_env_parses_into_operator_settings(render: Callable[..., Any]) -> None:
    result = render()
    settings = OperatorSettings.from_env(_env(result.one("Deployment")))
    assert settings.image_train == "ghcr.io/sdxl-operator/sdxl-workloads-gpu:0.1.0"
    assert settings.image_neuron == "ghcr.io/sdxl-operator/sdxl-workloads-neuron:0.1.0"
    assert settings.image_cpu == "ghcr.io/sdxl-operator/sdxl-workloads-cpu:0.1.0"
    assert settings.image_pull_policy == "IfNotPresent"
    # Compiles default to an inf2.8xlarge: big host RAM, Neuron taint tolerated.
    assert settings.compile_on_neuron is True
    assert settings.compile_node_selector == {"node.kubernetes.io/instance-type": "inf2.8xlarge"}
    assert settings.compile_tolerations == (
        {"key": "aws.amazon.com/neuron", "operator": "Exists", "effect": "NoSchedule"},
    )
    assert settings.neuron_tolerations == settings.compile_tolerations
    assert settings.train_tolerations == ({"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},)
    assert settings.artifact_store == "pvc://sdxl-artifacts/store"
    assert settings.hf_token_secret is None
    assert (settings.train_deadline_seconds, settings.compile_deadline_seconds, settings.train_backoff_limit) == (
        86400, 14400, 2)
    assert (settings.status_interval_seconds, settings.pending_grace_seconds) == (10.0, 120.0)
    workload_accounts = [sa["metadata"]["name"] for sa in result.of_kind("ServiceAccount")
                         if sa["metadata"]["labels"]["app.kubernetes.io/component"] == "workload"]
    assert workload_accounts == [settings.workload_service_account]
    # Cluster-wide, the operator creates that account in every other namespace that runs work.
    assert settings.create_workload_service_account is True
    assert settings.finished_job_ttl_seconds == 86400
    env = result.one("Deployment")["spec"]["template"]["spec"]["containers"][0]["env"]
    assert {"name": "SDXL_POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}} in env


def test_workload_account_annotations_reach_the_operator(render: Callable[..., Any]) -> None:
    role = "arn:aws:iam::123456789012:role/sdxl-artifacts"
    values = {"workloadServiceAccount": {"annotations": {"eks.amazonaws.com/role-arn": role}}}
    settings = OperatorSettings.from_env(_env(render(values).one("Deployment")))
    assert settings.workload_service_account_annotations == {"eks.amazonaws.com/role-arn": role}
    off = OperatorSettings.from_env(_env(render({"workloadServiceAccount": {"create": False}}).one("Deployment")))
    assert off.create_workload_service_account is False


def test_custom_env_parses_into_operator_settings(render: Callable[..., Any]) -> None:
    values = VALUE_SETS["custom-images-and-pools"]
    deployment = render(values).one("Deployment")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "registry.example.com/sdxl/operator:1.2.3"
    assert container["imagePullPolicy"] == "Always"
    assert deployment["spec"]["template"]["spec"]["imagePullSecrets"] == [{"name": "regcred"}]
    settings = OperatorSettings.from_env(_env(deployment))
    assert settings.image_train == f"registry.example.com/sdxl/gpu@{DIGEST}"
    assert settings.image_neuron == "registry.example.com/sdxl/neuron:1.2.3-sdk2.26"
    assert settings.image_nvidia == "registry.example.com/sdxl/gpu:1.2.3"
    assert settings.image_cpu == "registry.example.com/sdxl/cpu:1.2.3"
    assert settings.image_pull_policy == "Always"
    assert settings.train_node_selector == {"karpenter.sh/nodepool": "gpu-train"}
    assert settings.train_tolerations == ()
    # compile.onNeuron false: the CPU pool is handed over, not the Neuron one.
    assert settings.compile_on_neuron is False
    assert settings.compile_node_selector == {"node.kubernetes.io/instance-type": "r6i.4xlarge"}
    assert settings.compile_tolerations == tuple(values["compile"]["cpuPool"]["tolerations"])
    assert settings.neuron_node_selector == {"karpenter.k8s.aws/instance-family": "inf2"}
    assert settings.nvidia_node_selector == {"node.kubernetes.io/instance-type": "g6.xlarge"}
    assert settings.artifact_store == "s3://my-sdxl-bucket/artifacts"
    assert settings.hf_token_secret == "hf-token"
    assert settings.workload_service_account == "sdxl-runner"
    assert settings.workload_image_pull_secrets == ("regcred-workloads",)
    assert settings.allowed_priority_classes == ("batch-*",)
    assert (settings.train_deadline_seconds, settings.compile_deadline_seconds, settings.train_backoff_limit) == (
        7200, 3600, 5)
    assert (settings.status_interval_seconds, settings.pending_grace_seconds) == (30.0, 600.0)


@pytest.mark.parametrize(
    ("value_set", "namespaces"),
    [
        ("default", [RELEASE_NAMESPACE]),
        ("namespaced", ["team-a", "team-b"]),
        ("cluster-wide", [RELEASE_NAMESPACE, "ml", "ml-dev"]),
        ("custom-images-and-pools", [RELEASE_NAMESPACE]),
    ],
)
def test_workload_service_account_in_each_namespace(
    render: Callable[..., Any], value_set: str, namespaces: list[str]
) -> None:
    result = render(VALUE_SETS[value_set])
    workload_accounts = [sa for sa in result.of_kind("ServiceAccount")
                         if sa["metadata"]["labels"]["app.kubernetes.io/component"] == "workload"]
    assert [sa["metadata"]["namespace"] for sa in workload_accounts] == namespaces
    settings = OperatorSettings.from_env(_env(result.one("Deployment")))
    for account in workload_accounts:
        assert account["metadata"]["name"] == settings.workload_service_account
        # Workloads never call the Kubernetes API.
        assert account["automountServiceAccountToken"] is False
        expected = VALUE_SETS[value_set].get("workloadServiceAccount", {}).get("annotations")
        assert account["metadata"].get("annotations") == expected


def test_workload_service_account_not_created_when_disabled(render: Callable[..., Any]) -> None:
    result = render({"workloadServiceAccount": {"create": False, "name": "existing"}})
    components = [sa["metadata"]["labels"]["app.kubernetes.io/component"] for sa in result.of_kind("ServiceAccount")]
    assert components == ["operator"]
    assert OperatorSettings.from_env(_env(result.one("Deployment"))).workload_service_account == "existing"


def _monitor(result: Any, suffix: str) -> dict[str, Any]:
    [monitor] = [m for m in result.of_kind("ServiceMonitor") if m["metadata"]["name"].endswith(suffix)]
    return monitor


@pytest.mark.parametrize("value_set", ["default", "namespaced"])
def test_peering_object_is_the_one_the_replicas_name(render: Callable[..., Any], value_set: str) -> None:
    """One ClusterKopfPeering cluster-wide; a KopfPeering in each watched namespace (where Kopf looks)."""
    result = render(VALUE_SETS[value_set])
    [peering_arg] = [a for a in _args(result.one("Deployment")) if a.startswith("--peering=")]
    name = peering_arg.split("=", 1)[1]
    namespaces = VALUE_SETS[value_set].get("watchNamespaces")
    if namespaces:
        assert result.of_kind("ClusterKopfPeering") == []
        assert sorted((p["metadata"]["namespace"], p["metadata"]["name"]) for p in result.of_kind("KopfPeering")) == \
            [(namespace, name) for namespace in namespaces]
    else:
        assert result.of_kind("KopfPeering") == []
        assert result.one("ClusterKopfPeering")["metadata"]["name"] == name


def test_disruption_budget_keeps_one_replica_through_drains(render: Callable[..., Any]) -> None:
    result = render()
    budget = result.one("PodDisruptionBudget")
    assert budget["spec"]["minAvailable"] == 1
    pod_labels = result.one("Deployment")["spec"]["template"]["metadata"]["labels"]
    assert budget["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    assert budget["spec"]["selector"]["matchLabels"] == result.one("Deployment")["spec"]["selector"]["matchLabels"]
    # One replica: a budget of one would block every drain of its node.
    assert render({"operator": {"replicas": 1}}).of_kind("PodDisruptionBudget") == []


def test_replicas_prefer_different_nodes_unless_affinity_is_given(render: Callable[..., Any]) -> None:
    deployment = render().one("Deployment")
    [term] = deployment["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"][
        "preferredDuringSchedulingIgnoredDuringExecution"]
    assert term["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
    assert term["podAffinityTerm"]["labelSelector"]["matchLabels"] == deployment["spec"]["selector"]["matchLabels"]
    own = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
        {"matchExpressions": [{"key": "pool", "operator": "In", "values": ["system"]}]}]}}}
    assert render({"operator": {"affinity": own}}).one("Deployment")["spec"]["template"]["spec"]["affinity"] == own


def test_metrics_service_reaches_the_operators_metrics_port(render: Callable[..., Any]) -> None:
    result = render({"operator": {"metricsPort": 9102}})
    deployment = result.one("Deployment")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert "--metrics-port=9102" in container["args"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    service = result.one("Service")
    [port] = service["spec"]["ports"]
    assert (port["name"], port["port"], ports[port["targetPort"]]) == ("metrics", 9102, 9102)
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]


def test_service_monitor_scrapes_the_operator(render: Callable[..., Any]) -> None:
    result = render(VALUE_SETS["service-monitor"])
    monitor = _monitor(result, "-operator")
    service = result.one("Service")
    assert monitor["metadata"]["namespace"] == service["metadata"]["namespace"] == RELEASE_NAMESPACE
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": [RELEASE_NAMESPACE]}
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    [endpoint] = monitor["spec"]["endpoints"]
    assert (endpoint["port"], endpoint["path"]) == (service["spec"]["ports"][0]["name"], "/metrics")
    assert endpoint["interval"] == "15s"
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"


def test_service_monitor_off_by_default(render: Callable[..., Any]) -> None:
    assert render().of_kind("ServiceMonitor") == []


@pytest.mark.parametrize(
    ("values", "namespace_selector"),
    [
        (VALUE_SETS["service-monitor"], {"matchNames": ["team-a"]}),
        ({"serviceMonitor": {"enabled": True}}, {"any": True}),
    ],
)
def test_service_monitor_selects_the_inference_servers(
    render: Callable[..., Any], values: dict[str, Any], namespace_selector: dict[str, Any]
) -> None:
    monitor = _monitor(render(values), "-servers")
    assert monitor["metadata"]["namespace"] == RELEASE_NAMESPACE
    # The labels the operator puts on the inference Services (sdxl_operator/core/labels.py).
    assert monitor["spec"]["selector"]["matchLabels"] == {labels.NAME_KEY: labels.SERVER,
                                                          labels.MANAGED_BY_KEY: labels.MANAGED_BY}
    assert monitor["spec"]["namespaceSelector"] == namespace_selector
    [endpoint] = monitor["spec"]["endpoints"]
    assert (endpoint["port"], endpoint["path"]) == ("http", "/metrics")
    for key, value in values["serviceMonitor"].get("labels", {}).items():
        assert monitor["metadata"]["labels"][key] == value


def test_notes_tell_the_next_steps(helm: Callable[..., Any]) -> None:
    result = helm("install", "sdxl", str(CHART_DIR), "--namespace", RELEASE_NAMESPACE, "--dry-run=client",
                  "--set", "watchNamespaces={team-a}")
    assert result.returncode == 0, result.stderr
    notes = result.stdout.split("NOTES:", 1)[1]
    assert "kubectl apply -n team-a -f crds/examples/" in notes
    assert "kubectl get sdxl" in notes
    for example in re.findall(r"-f (crds/examples/\S+\.yaml)", notes):
        assert (REPO_ROOT / example).is_file(), f"NOTES.txt names {example}, which does not exist"


def test_values_yaml_documents_every_chart_key() -> None:
    """Each key the chart defines (the schema's properties) has a comment line right above it."""
    schema = yaml.safe_load((CHART_DIR / "values.schema.json").read_text())
    lines = (CHART_DIR / "values.yaml").read_text().splitlines()
    path: list[tuple[int, str]] = []
    undocumented = []
    for index, line in enumerate(lines):
        match = re.match(r"^( *)([A-Za-z0-9_.\-/]+):", line)
        if not match or line.lstrip().startswith("-"):
            continue
        indent, key = len(match.group(1)), match.group(2)
        path = [(i, k) for i, k in path if i < indent] + [(indent, key)]
        node: dict[str, Any] | None = schema
        for _, segment in path:
            node = (node or {}).get("properties", {}).get(segment)
        if node is None:  # inside a Kubernetes-shaped value (resources, securityContext...), not a chart key
            continue
        if not lines[index - 1].lstrip().startswith("#"):
            undocumented.append(".".join(k for _, k in path))
    assert undocumented == []



def test_refuses_clusters_older_than_the_crds_need(render: Callable[..., Any]) -> None:
    assert render(None, "--kube-version", "1.29.0").returncode == 0
    result = render(None, "--kube-version", "1.28.0")
    assert result.returncode != 0
    assert "kubeVersion" in result.stderr


def test_the_resync_interval_reaches_the_operator(render: Callable[..., Any]) -> None:
    args = render({"operator": {"resyncInterval": 0}}).one("Deployment")["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--resync-interval=0" in args
    default = render({}).one("Deployment")["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--resync-interval=1800" in default
