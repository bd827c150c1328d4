"""``SDXLDeployment.spec`` as frozen dataclasses: the one typed form the operator and the workloads share.

Each field says its Python type and what it is for; defaults, bounds and allowed values are the CRD's
(crds/sdxldeployments.sdxl.io.yaml), applied by :meth:`DeploymentSpec.from_dict` before a dataclass is
built. Field names are snake_case here and camelCase in YAML (:func:`spec_building.camel`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sdxl_contract.pod_scheduling import Scheduling
from sdxl_contract.schema import apply_defaults, load_crd
from sdxl_contract.spec_building import build_spec, from_camel_dict, to_camel_dict

KIND = "SDXLDeployment"


@dataclass(frozen=True, kw_only=True)
class NeuronSettings:
    """Static shapes and compiler settings of an Inferentia2 compile (optimum-neuron)."""

    batch_size: int  # prompts per call the compiled model takes
    height: int  # image height in pixels, fixed at compile time
    width: int  # image width in pixels, fixed at compile time
    num_images_per_prompt: int  # images per prompt; the UNet is compiled at batch_size * this
    auto_cast_type: str  # what matmuls are cast to (auto_cast="matmul" always)
    instance_type: str  # the serving instance; compiles target its family

    @classmethod
    def crd_defaults(cls) -> NeuronSettings:
        """The settings of ``neuron: {}``: what a Neuron deployment gets when it says nothing."""
        node = load_crd(KIND).spec_schema["properties"]["neuron"]
        return from_camel_dict(cls, apply_defaults({}, node))

    def shapes(self) -> dict[str, int]:
        """The static shapes in the spec's (camelCase) names, as the compile key takes them."""
        return {"batchSize": self.batch_size, "height": self.height, "width": self.width,
                "numImagesPerPrompt": self.num_images_per_prompt}


@dataclass(frozen=True, kw_only=True)
class Adapters:
    """How many fine-tunes one multi-adapter server keeps loaded, and the largest LoRA rank it takes."""

    resident: int
    max_rank: int


@dataclass(frozen=True, kw_only=True)
class Server:
    """The inference server's batching, queue and timeout."""

    max_batch: int  # requests batched into one pipeline call
    queue_size: int  # requests waiting before 503
    request_timeout_seconds: int  # per request


@dataclass(frozen=True, kw_only=True)
class ServingResources:
    """What each server pod asks of the cluster beyond the accelerator (the operator uses these)."""

    cpu: str | None = None  # a Kubernetes quantity; the accelerator's profile when unset
    memory: str | None = None  # a Kubernetes quantity; the accelerator's profile when unset
    node_selector: dict[str, str]  # node labels
    tolerations: list[dict[str, Any]]  # as in a Pod spec


@dataclass(frozen=True, kw_only=True)
class Auth:
    """The API key the server requires, from a Secret in the namespace."""

    api_key_secret: str  # the Secret's name
    api_key_secret_key: str  # the key inside it


@dataclass(frozen=True, kw_only=True)
class Autoscaling:
    """The range of server pods and what they scale on (an HPA, or a KEDA ScaledObject: the chart decides)."""

    min_replicas: int
    max_replicas: int
    metric: str  # cpu | queueDepth | inFlight
    target: float | None = None  # average per pod with queueDepth / inFlight
    target_cpu_utilization_percentage: int = field(metadata={"crd_key": "targetCPUUtilizationPercentage"})


@dataclass(frozen=True, kw_only=True)
class DeploymentSpec:
    """What to serve (a fine-tune, a set of them, or a LoRA URI), on which accelerator, and how."""

    fine_tune: str | None = None  # name of an SDXLFineTune; the operator resolves it into lora
    fine_tunes: list[str] | None = None  # names of SDXLFineTunes served by one multi-adapter server
    fine_tune_selector: dict[str, Any] | None = None  # a label selector over the namespace's SDXLFineTunes
    adapters: Adapters | None = None  # multi-adapter server limits (with fine_tunes / fine_tune_selector)
    lora: str | None = None  # URI of a LoRA file or folder (instead of fine_tune)
    lora_sha256: str | None = None  # pins a direct LoRA URI in the compile key
    base_model: str | None = None  # default: the fine-tune's baseModel; required with lora
    base_model_revision: str | None = None  # HF revision, carried over from the fine-tune
    accelerator: str  # neuron | nvidia | cpu
    neuron: NeuronSettings | None = None  # filled in (with the CRD's defaults) for accelerator neuron only
    lora_scale: float  # LoRA strength the compile fuses or the server applies
    replicas: int  # server pods (ignored with autoscaling)
    server: Server
    resources: ServingResources
    scheduling: Scheduling  # affinity, priority, spread, pod labels/annotations of compile and server pods
    auth: Auth | None = None  # no API key when unset
    autoscaling: Autoscaling | None = None  # a fixed number of replicas when unset

    @classmethod
    def from_dict(cls, data: object) -> DeploymentSpec:
        """A camelCase spec (a user's or a resolved one) checked and defaulted by the CRD.

        ``neuron`` gets its defaults when the accelerator is Neuron, as the operator's resolved spec
        has them (a CRD cannot default an object on a sibling's value). Raises
        :class:`~sdxl_contract.spec_building.InvalidSpec` naming the field.
        """
        if isinstance(data, Mapping) and data.get("neuron") is None and \
                data.get("accelerator", "neuron") == "neuron":
            data = {**data, "neuron": {}}
        return build_spec(cls, KIND, data)

    @property
    def neuron_settings(self) -> NeuronSettings:
        """The Neuron settings, the CRD's defaults off Neuron (the compile key reads them only on Neuron)."""
        return self.neuron or NeuronSettings.crd_defaults()

    def to_dict(self) -> dict[str, Any]:
        """The full spec with every default filled in, camelCase."""
        result: dict[str, Any] = to_camel_dict(self)
        return result
