"""Operator settings, read once from environment variables (the Helm chart sets them).

Every variable the operator reads is listed here and nowhere else:

=========================================  ==========================================  ===================================
Variable                                   Meaning                                     Default
=========================================  ==========================================  ===================================
SDXL_IMAGE_TRAIN                           image of the training Job                   sdxl-operator/workload-gpu:0.1.0
SDXL_IMAGE_NEURON                          image of the Neuron compile Job and server  sdxl-operator/workload-neuron:0.1.0
SDXL_IMAGE_NVIDIA                          image of the NVIDIA inference server        sdxl-operator/workload-gpu:0.1.0
SDXL_IMAGE_CPU                             image of the CPU server / prepare Job       sdxl-operator/workload-cpu:0.1.0
SDXL_IMAGE_PULL_POLICY                     Always | IfNotPresent | Never               IfNotPresent
SDXL_TRAIN_NODE_SELECTOR                   JSON object, merged under spec's selector   {}
SDXL_TRAIN_TOLERATIONS                     JSON list of tolerations, before spec's     []
SDXL_COMPILE_NODE_SELECTOR                 JSON object for compile Jobs                {}
SDXL_COMPILE_TOLERATIONS                   JSON list for compile Jobs                  []
SDXL_NEURON_NODE_SELECTOR                  JSON object for Neuron servers              {}
SDXL_NEURON_TOLERATIONS                    JSON list for Neuron servers                []
SDXL_NVIDIA_NODE_SELECTOR                  JSON object for NVIDIA servers              {}
SDXL_NVIDIA_TOLERATIONS                    JSON list for NVIDIA servers                []
SDXL_COMPILE_ON_NEURON                     true | false: compile on a Neuron node      true
SDXL_ARTIFACT_STORE                        URI where outputs go by default             pvc://sdxl-artifacts/store
SDXL_HF_TOKEN_SECRET                       Secret (key ``token``) with a HF token      unset: no token
SDXL_WORKLOAD_SERVICE_ACCOUNT              service account of workload pods            unset: namespace default
SDXL_CREATE_WORKLOAD_SERVICE_ACCOUNT       create it where missing (true | false)      true
SDXL_WORKLOAD_SERVICE_ACCOUNT_ANNOTATIONS  JSON object of annotations it gets          {}
SDXL_TRAIN_DEADLINE_SECONDS                activeDeadlineSeconds of training Jobs      86400
SDXL_COMPILE_DEADLINE_SECONDS              activeDeadlineSeconds of compile Jobs       14400
SDXL_TRAIN_BACKOFF_LIMIT                   backoffLimit of training Jobs               2
SDXL_STATUS_INTERVAL_SECONDS               how often status is recomputed (seconds)    10
SDXL_PENDING_GRACE_SECONDS                 unschedulable this long => failure shown    120
SDXL_FINISHED_JOB_TTL_SECONDS              ttlSecondsAfterFinished of Jobs (>= 60)     86400
SDXL_POD_NAME                              reportingInstance of the operator's Events  the host name
SDXL_WORKLOAD_SERVICE_ACCOUNT_NAMESPACE_ANNOTATIONS
                                           JSON {namespace: {annotation: value}}: a    {}
                                           namespace's own identity, over the above
SDXL_TENANCY_ALLOWED_PREFIXES              JSON {namespace glob: [URI prefix, ...]}:   {}
                                           store locations a namespace may also use
SDXL_RESERVED_NAMESPACES                   JSON list of namespace globs never          ["kube-*"]
                                           reconciled
SDXL_ALLOWED_TOLERATION_KEYS               JSON list of globs: toleration keys a       the GPU/Neuron/Karpenter keys
                                           spec may ask for
SDXL_ALLOWED_NODE_SELECTOR_KEYS            JSON list of globs: nodeSelector keys a     instance type, zone, arch,
                                           spec may ask for                            Karpenter and EKS keys
SDXL_MAX_IMAGES                            most instance photos and class images       1000
SDXL_SHARED_COMPILE_CACHE                  one <store>/compiled for every namespace;   true
                                           false: each namespace's under its prefix
SDXL_NETWORK_POLICY                        true | false: a NetworkPolicy per server    true
SDXL_NETWORK_POLICY_SOURCES                JSON list of NetworkPolicyPeers also        []
                                           allowed to reach the servers
SDXL_KEDA_ENABLED                          true | false: spec.autoscaling becomes a    false
                                           KEDA ScaledObject instead of an HPA
SDXL_KEDA_PROMETHEUS_ADDRESS               Prometheus URL KEDA's triggers query        unset (required with KEDA)
SDXL_WORKLOAD_IMAGE_PULL_SECRETS           JSON list of Secret names: the workload     []
                                           pods' imagePullSecrets
SDXL_ALLOWED_PRIORITY_CLASSES              JSON list of globs: priority classes a      [] (none)
                                           spec's scheduling may name
=========================================  ==========================================  ===================================

Malformed values raise :class:`SettingsError` naming the variable and what it expects, so a bad Helm
value stops the operator at start-up instead of producing broken Jobs later.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from sdxl_contract import accelerators

PULL_POLICIES = ("Always", "IfNotPresent", "Never")
# Every variable read below, for the Helm chart's tests to compare with the env it sets.
ENVIRONMENT_VARIABLES: tuple[str, ...] = (
    "SDXL_IMAGE_TRAIN", "SDXL_IMAGE_NEURON", "SDXL_IMAGE_NVIDIA", "SDXL_IMAGE_CPU", "SDXL_IMAGE_PULL_POLICY",
    "SDXL_TRAIN_NODE_SELECTOR", "SDXL_TRAIN_TOLERATIONS", "SDXL_COMPILE_NODE_SELECTOR", "SDXL_COMPILE_TOLERATIONS",
    "SDXL_NEURON_NODE_SELECTOR", "SDXL_NEURON_TOLERATIONS", "SDXL_NVIDIA_NODE_SELECTOR", "SDXL_NVIDIA_TOLERATIONS",
    "SDXL_COMPILE_ON_NEURON", "SDXL_ARTIFACT_STORE", "SDXL_HF_TOKEN_SECRET", "SDXL_WORKLOAD_SERVICE_ACCOUNT",
    "SDXL_CREATE_WORKLOAD_SERVICE_ACCOUNT", "SDXL_WORKLOAD_SERVICE_ACCOUNT_ANNOTATIONS", "SDXL_FINISHED_JOB_TTL_SECONDS",
    "SDXL_POD_NAME",
    "SDXL_TRAIN_DEADLINE_SECONDS", "SDXL_COMPILE_DEADLINE_SECONDS", "SDXL_TRAIN_BACKOFF_LIMIT",
    "SDXL_STATUS_INTERVAL_SECONDS", "SDXL_PENDING_GRACE_SECONDS",
    "SDXL_WORKLOAD_SERVICE_ACCOUNT_NAMESPACE_ANNOTATIONS", "SDXL_TENANCY_ALLOWED_PREFIXES", "SDXL_RESERVED_NAMESPACES",
    "SDXL_ALLOWED_TOLERATION_KEYS", "SDXL_ALLOWED_NODE_SELECTOR_KEYS", "SDXL_MAX_IMAGES", "SDXL_NETWORK_POLICY",
    "SDXL_SHARED_COMPILE_CACHE",
    "SDXL_NETWORK_POLICY_SOURCES", "SDXL_KEDA_ENABLED", "SDXL_KEDA_PROMETHEUS_ADDRESS",
    "SDXL_WORKLOAD_IMAGE_PULL_SECRETS", "SDXL_ALLOWED_PRIORITY_CLASSES",
)
# Taint keys of the node pools the operator's own work uses; anything else (the control plane's
# node-role.kubernetes.io/* taints above all) needs the administrator to list it.
DEFAULT_ALLOWED_TOLERATION_KEYS: tuple[str, ...] = (
    *(profile.node_taint_key for profile in (accelerators.NVIDIA, accelerators.NEURON) if profile.node_taint_key),
    "aws.amazon.com/neuroncore", "karpenter.sh/*", "sdxl.io/*",
)
DEFAULT_ALLOWED_NODE_SELECTOR_KEYS: tuple[str, ...] = (
    "node.kubernetes.io/instance-type", "topology.kubernetes.io/zone", "topology.kubernetes.io/region",
    "kubernetes.io/arch", "karpenter.sh/*", "karpenter.k8s.aws/*", "eks.amazonaws.com/nodegroup",
    "eks.amazonaws.com/capacityType", "nvidia.com/*", "sdxl.io/*",
)
DEFAULT_RESERVED_NAMESPACES: tuple[str, ...] = ("kube-*",)
# DreamBooth needs 10-20 photos; a thousand is far past any real subject and bounds what one run
# downloads, decodes and holds in memory.
DEFAULT_MAX_IMAGES = 1000
TOLERATION_KEYS = frozenset({"key", "operator", "value", "effect", "tolerationSeconds"})


class SettingsError(ValueError):
    """An operator environment variable has a value the operator cannot use."""


@dataclasses.dataclass(frozen=True)
class OperatorSettings:
    """The operator's configuration; build it with :meth:`from_env`."""

    image_train: str = "sdxl-operator/workload-gpu:0.1.0"
    image_neuron: str = "sdxl-operator/workload-neuron:0.1.0"
    image_nvidia: str = "sdxl-operator/workload-gpu:0.1.0"
    image_cpu: str = "sdxl-operator/workload-cpu:0.1.0"
    image_pull_policy: str = "IfNotPresent"
    train_node_selector: Mapping[str, str] = dataclasses.field(default_factory=dict)
    train_tolerations: tuple[Mapping[str, Any], ...] = ()
    compile_node_selector: Mapping[str, str] = dataclasses.field(default_factory=dict)
    compile_tolerations: tuple[Mapping[str, Any], ...] = ()
    neuron_node_selector: Mapping[str, str] = dataclasses.field(default_factory=dict)
    neuron_tolerations: tuple[Mapping[str, Any], ...] = ()
    nvidia_node_selector: Mapping[str, str] = dataclasses.field(default_factory=dict)
    nvidia_tolerations: tuple[Mapping[str, Any], ...] = ()
    compile_on_neuron: bool = True
    artifact_store: str = "pvc://sdxl-artifacts/store"
    hf_token_secret: str | None = None
    workload_service_account: str | None = None
    create_workload_service_account: bool = True
    workload_service_account_annotations: Mapping[str, str] = dataclasses.field(default_factory=dict)
    train_deadline_seconds: int = 86400
    compile_deadline_seconds: int = 14400
    train_backoff_limit: int = 2
    # Float so tests can poll quickly; Helm passes whole seconds.
    status_interval_seconds: float = 10.0
    pending_grace_seconds: float = 120.0
    # Finished Jobs (and their pods) are deleted this long after they end: the operator records their
    # result within seconds, and the pods' logs stay readable for a day. (A training Job gone while the
    # operator was down for longer would be started again, resuming from its last checkpoint.)
    finished_job_ttl_seconds: int = 86400
    # Who posts the operator's Events (``reportingInstance``): the chart passes the pod's name.
    pod_name: str | None = None
    # Per namespace, annotations over ``workload_service_account_annotations``: one cloud identity per tenant.
    workload_service_account_namespace_annotations: Mapping[str, Mapping[str, str]] = dataclasses.field(
        default_factory=dict)
    # Namespace glob -> URI prefixes of the store (or its bucket/claim) the namespace may use besides its own.
    tenancy_allowed_prefixes: Mapping[str, tuple[str, ...]] = dataclasses.field(default_factory=dict)
    reserved_namespaces: tuple[str, ...] = DEFAULT_RESERVED_NAMESPACES
    allowed_toleration_keys: tuple[str, ...] = DEFAULT_ALLOWED_TOLERATION_KEYS
    allowed_node_selector_keys: tuple[str, ...] = DEFAULT_ALLOWED_NODE_SELECTOR_KEYS
    max_images: int = DEFAULT_MAX_IMAGES
    shared_compile_cache: bool = True
    network_policy: bool = True
    network_policy_sources: tuple[Mapping[str, Any], ...] = ()
    # spec.autoscaling becomes a KEDA ScaledObject instead of a HorizontalPodAutoscaler (chart keda.enabled);
    # its Prometheus triggers query this server for the servers' gauges.
    keda: bool = False
    keda_prometheus_address: str | None = None
    # Registry credentials of every workload pod (train, compile, serve): Secret names in its namespace.
    workload_image_pull_secrets: tuple[str, ...] = ()
    # Priority classes (globs) a spec's scheduling.priorityClassName may name; none by default, since a
    # class that preempts is the administrator's to hand out.
    allowed_priority_classes: tuple[str, ...] = ()

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> OperatorSettings:
        """Read the settings from ``environ`` (default: ``os.environ``); unset or empty means default."""
        env = os.environ if environ is None else environ
        defaults = cls()

        def text(name: str, default: str) -> str:
            value = env.get(name, "").strip()
            return value or default

        def optional_text(name: str) -> str | None:
            value = env.get(name, "").strip()
            return value or None

        pull_policy = text("SDXL_IMAGE_PULL_POLICY", defaults.image_pull_policy)
        if pull_policy not in PULL_POLICIES:
            raise SettingsError(
                f"SDXL_IMAGE_PULL_POLICY: must be one of {', '.join(PULL_POLICIES)}, got {pull_policy!r}"
            )
        keda = _boolean(env, "SDXL_KEDA_ENABLED", defaults.keda)
        return cls(
            image_train=text("SDXL_IMAGE_TRAIN", defaults.image_train),
            image_neuron=text("SDXL_IMAGE_NEURON", defaults.image_neuron),
            image_nvidia=text("SDXL_IMAGE_NVIDIA", defaults.image_nvidia),
            image_cpu=text("SDXL_IMAGE_CPU", defaults.image_cpu),
            image_pull_policy=pull_policy,
            train_node_selector=_node_selector(env, "SDXL_TRAIN_NODE_SELECTOR"),
            train_tolerations=_tolerations(env, "SDXL_TRAIN_TOLERATIONS"),
            compile_node_selector=_node_selector(env, "SDXL_COMPILE_NODE_SELECTOR"),
            compile_tolerations=_tolerations(env, "SDXL_COMPILE_TOLERATIONS"),
            neuron_node_selector=_node_selector(env, "SDXL_NEURON_NODE_SELECTOR"),
            neuron_tolerations=_tolerations(env, "SDXL_NEURON_TOLERATIONS"),
            nvidia_node_selector=_node_selector(env, "SDXL_NVIDIA_NODE_SELECTOR"),
            nvidia_tolerations=_tolerations(env, "SDXL_NVIDIA_TOLERATIONS"),
            compile_on_neuron=_boolean(env, "SDXL_COMPILE_ON_NEURON", defaults.compile_on_neuron),
            artifact_store=_artifact_store(text("SDXL_ARTIFACT_STORE", defaults.artifact_store)),
            hf_token_secret=optional_text("SDXL_HF_TOKEN_SECRET"),
            workload_service_account=optional_text("SDXL_WORKLOAD_SERVICE_ACCOUNT"),
            create_workload_service_account=_boolean(env, "SDXL_CREATE_WORKLOAD_SERVICE_ACCOUNT",
                                                     defaults.create_workload_service_account),
            workload_service_account_annotations=_string_map(
                env, "SDXL_WORKLOAD_SERVICE_ACCOUNT_ANNOTATIONS",
                '{"eks.amazonaws.com/role-arn": "arn:aws:iam::123456789012:role/sdxl-artifacts"}'),
            finished_job_ttl_seconds=_integer(env, "SDXL_FINISHED_JOB_TTL_SECONDS",
                                              defaults.finished_job_ttl_seconds, 60),
            pod_name=optional_text("SDXL_POD_NAME"),
            train_deadline_seconds=_integer(env, "SDXL_TRAIN_DEADLINE_SECONDS", defaults.train_deadline_seconds, 1),
            compile_deadline_seconds=_integer(
                env, "SDXL_COMPILE_DEADLINE_SECONDS", defaults.compile_deadline_seconds, 1
            ),
            train_backoff_limit=_integer(env, "SDXL_TRAIN_BACKOFF_LIMIT", defaults.train_backoff_limit, 0),
            status_interval_seconds=_seconds(env, "SDXL_STATUS_INTERVAL_SECONDS", defaults.status_interval_seconds),
            pending_grace_seconds=_seconds(env, "SDXL_PENDING_GRACE_SECONDS", defaults.pending_grace_seconds),
            workload_service_account_namespace_annotations=_namespace_annotations(env),
            tenancy_allowed_prefixes=_allowed_prefixes(env),
            reserved_namespaces=_globs(env, "SDXL_RESERVED_NAMESPACES", defaults.reserved_namespaces),
            allowed_toleration_keys=_globs(env, "SDXL_ALLOWED_TOLERATION_KEYS", defaults.allowed_toleration_keys),
            allowed_node_selector_keys=_globs(env, "SDXL_ALLOWED_NODE_SELECTOR_KEYS",
                                              defaults.allowed_node_selector_keys),
            max_images=_integer(env, "SDXL_MAX_IMAGES", defaults.max_images, 1),
            shared_compile_cache=_boolean(env, "SDXL_SHARED_COMPILE_CACHE", defaults.shared_compile_cache),
            network_policy=_boolean(env, "SDXL_NETWORK_POLICY", defaults.network_policy),
            network_policy_sources=_network_policy_sources(env),
            keda=keda,
            keda_prometheus_address=_prometheus_address(env, keda),
            workload_image_pull_secrets=_secret_names(env, "SDXL_WORKLOAD_IMAGE_PULL_SECRETS"),
            allowed_priority_classes=_globs(env, "SDXL_ALLOWED_PRIORITY_CLASSES", defaults.allowed_priority_classes),
        )


def _raw(env: Mapping[str, str], name: str) -> str | None:
    value = env.get(name, "").strip()
    return value or None


def _json(env: Mapping[str, str], name: str, example: str) -> Any:
    raw = _raw(env, name)
    if raw is None:
        return None
    try:
        return json.loads(raw)
    except json.JSONDecodeError as exc:
        raise SettingsError(f"{name}: not valid JSON ({exc.msg} at position {exc.pos}); expected e.g. {example}") from exc


def _node_selector(env: Mapping[str, str], name: str) -> dict[str, str]:
    return _string_map(env, name, '{"node.kubernetes.io/instance-type": "g5.2xlarge"}')


def _string_map(env: Mapping[str, str], name: str, example: str) -> dict[str, str]:
    value = _json(env, name, example)
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise SettingsError(f"{name}: expected a JSON object of strings, e.g. {example}; got {value!r}")
    return dict(value)


def _tolerations(env: Mapping[str, str], name: str) -> tuple[dict[str, Any], ...]:
    example = '[{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]'
    value = _json(env, name, example)
    if value is None:
        return ()
    if not isinstance(value, list):
        raise SettingsError(f"{name}: expected a JSON list of tolerations, e.g. {example}; got {value!r}")
    for index, item in enumerate(value):
        if not isinstance(item, dict):
            raise SettingsError(f"{name}[{index}]: expected a toleration object, e.g. {example}; got {item!r}")
        unknown = sorted(set(item) - TOLERATION_KEYS)
        if unknown:
            raise SettingsError(
                f"{name}[{index}]: unknown toleration field(s) {', '.join(unknown)}; "
                f"allowed: {', '.join(sorted(TOLERATION_KEYS))}"
            )
    return tuple(dict(item) for item in value)


def _boolean(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = _raw(env, name)
    if raw is None:
        return default
    lowered = raw.lower()
    if lowered in ("true", "1", "yes"):
        return True
    if lowered in ("false", "0", "no"):
        return False
    raise SettingsError(f"{name}: expected true or false, got {raw!r}")


_Number = TypeVar("_Number", int, float)


def _parsed(env: Mapping[str, str], name: str, parse: Callable[[str], _Number], expected: str) -> _Number | None:
    raw = _raw(env, name)
    if raw is None:
        return None
    try:
        return parse(raw)
    except ValueError as exc:
        raise SettingsError(f"{name}: expected {expected}, got {raw!r}") from exc


def _integer(env: Mapping[str, str], name: str, default: int, minimum: int) -> int:
    value = _parsed(env, name, int, "a whole number")
    if value is None:
        return default
    if value < minimum:
        raise SettingsError(f"{name}: must be at least {minimum}, got {value}")
    return value


def _seconds(env: Mapping[str, str], name: str, default: float) -> float:
    value = _parsed(env, name, float, "a number of seconds")
    if value is None:
        return default
    if value <= 0:
        raise SettingsError(f"{name}: must be greater than 0, got {_raw(env, name)!r}")
    return value


def _artifact_store(uri: str) -> str:
    if uri.startswith("pvc://"):
        claim = uri[len("pvc://"):].split("/", 1)[0]
        if not claim:
            raise SettingsError(f"SDXL_ARTIFACT_STORE: a pvc:// URI needs a claim name (pvc://claim/path), got {uri!r}")
    elif uri.startswith("s3://"):
        if not uri[len("s3://"):].split("/", 1)[0]:
            raise SettingsError(f"SDXL_ARTIFACT_STORE: an s3:// URI needs a bucket (s3://bucket/prefix), got {uri!r}")
    elif not uri.startswith("/"):
        raise SettingsError(
            f"SDXL_ARTIFACT_STORE: expected s3://bucket/prefix, pvc://claim/path or an absolute path, got {uri!r}"
        )
    return uri.rstrip("/")


def _secret_names(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    """A JSON list of Secret names (DNS subdomains); unset means none."""
    example = '["regcred"]'
    value = _json(env, name, example)
    if value is None:
        return ()
    if not isinstance(value, list) or not all(
            isinstance(item, str) and re.fullmatch(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?", item) for item in value):
        raise SettingsError(f"{name}: expected a JSON list of Secret names, e.g. {example}; got {value!r}")
    return tuple(value)


def _globs(env: Mapping[str, str], name: str, default: tuple[str, ...]) -> tuple[str, ...]:
    """A JSON list of strings; unset means ``default``, ``[]`` means none."""
    example = '["kube-*", "istio-system"]'
    value = _json(env, name, example)
    if value is None:
        return default
    if not isinstance(value, list) or not all(isinstance(item, str) and item for item in value):
        raise SettingsError(f"{name}: expected a JSON list of non-empty strings (globs allowed), e.g. {example}; "
                            f"got {value!r}")
    return tuple(value)


def _namespace_map(env: Mapping[str, str], name: str, example: str, entry_ok: Callable[[Any], bool],
                   shape: str) -> dict[str, Any]:
    """A JSON object keyed by namespace (globs allowed) whose every value passes ``entry_ok``; {} if unset."""
    value = _json(env, name, example)
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(ns, str) and entry_ok(entry) for ns, entry in value.items()):
        raise SettingsError(f"{name}: expected a JSON object of {shape}, e.g. {example}; got {value!r}")
    return value


def _namespace_annotations(env: Mapping[str, str]) -> dict[str, dict[str, str]]:
    value = _namespace_map(
        env, "SDXL_WORKLOAD_SERVICE_ACCOUNT_NAMESPACE_ANNOTATIONS",
        '{"team-a": {"eks.amazonaws.com/role-arn": "arn:aws:iam::123456789012:role/sdxl-team-a"}}',
        lambda annotations: isinstance(annotations, dict)
        and all(isinstance(k, str) and isinstance(v, str) for k, v in annotations.items()),
        "namespace: {annotation: value}")
    return {ns: dict(annotations) for ns, annotations in value.items()}


def _allowed_prefixes(env: Mapping[str, str]) -> dict[str, tuple[str, ...]]:
    value = _namespace_map(
        env, "SDXL_TENANCY_ALLOWED_PREFIXES", '{"team-a": ["s3://sdxl-artifacts/shared-models/"]}',
        lambda prefixes: isinstance(prefixes, list) and all(isinstance(p, str) and "://" in p for p in prefixes),
        "namespace (glob): [URI prefix, ...] with s3:// or pvc:// prefixes")
    return {ns: tuple(prefixes) for ns, prefixes in value.items()}


def _network_policy_sources(env: Mapping[str, str]) -> tuple[dict[str, Any], ...]:
    name = "SDXL_NETWORK_POLICY_SOURCES"
    example = ('[{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}}}, '
               '{"ipBlock": {"cidr": "10.0.0.0/16"}}]')
    value = _json(env, name, example)
    if value is None:
        return ()
    peers = ("namespaceSelector", "podSelector", "ipBlock")
    if not isinstance(value, list) or not all(
            isinstance(item, dict) and item and set(item) <= set(peers) for item in value):
        raise SettingsError(f"{name}: expected a JSON list of NetworkPolicy peers, each with "
                            f"{', '.join(peers)}, e.g. {example}; got {value!r}")
    return tuple(dict(item) for item in value)


def _prometheus_address(env: Mapping[str, str], keda: bool) -> str | None:
    """The Prometheus server KEDA's triggers query; required with KEDA, where every queue trigger needs it."""
    name = "SDXL_KEDA_PROMETHEUS_ADDRESS"
    address = _raw(env, name)
    if address is None:
        if keda:
            raise SettingsError(f"{name}: required when SDXL_KEDA_ENABLED is true: the Prometheus server that "
                                "scrapes the inference servers, e.g. http://prometheus-operated.monitoring.svc:9090")
        return None
    if not address.startswith(("http://", "https://")) or len(address.split("://", 1)[1]) == 0:
        raise SettingsError(f"{name}: expected an http:// or https:// URL of a Prometheus server, got {address!r}")
    return address.rstrip("/")
