"""Validation of an SDXLDeployment spec, mirroring the CRD's schema and CEL rules.

As for fine-tunes (:mod:`finetune_validation`, whose checks this reuses), the operator checks again what
the API server enforces, so a bad spec ends as phase Failed / InvalidSpec naming the field rather than
as a compile Job that crashes. ``FIELDS`` is the table of types, bounds and defaults of
``crds/sdxldeployments.sdxl.io.yaml``; ``OPTIONAL_OBJECTS`` are the objects whose inner defaults apply
only once the object is given (``neuron`` is forbidden off Neuron, ``auth`` and ``autoscaling`` switch
features on).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from sdxl_operator.finetune_validation import REVISION, Rule, Schema, check_fields

DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")
SECRET_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")
INSTANCE_TYPE = re.compile(r"^inf2\.[0-9]*x?large$")
ACCELERATORS = ("neuron", "nvidia", "cpu")
OPTIONAL_OBJECTS = ("neuron", "auth", "autoscaling")

NEURON_FIELDS: Schema = {
    "batchSize": Rule("integer", default=1, minimum=1, maximum=8),
    "height": Rule("integer", default=1024, minimum=256, maximum=2048, multiple_of=8),
    "width": Rule("integer", default=1024, minimum=256, maximum=2048, multiple_of=8),
    "numImagesPerPrompt": Rule("integer", default=1, minimum=1, maximum=8),
    "autoCastType": Rule("string", default="bf16", enum=("bf16", "fp16", "tf32")),
    "instanceType": Rule("string", default="inf2.8xlarge", max_length=63, pattern=INSTANCE_TYPE),
}
AUTH_FIELDS: Schema = {
    "apiKeySecret": Rule("string", required=True, min_length=1, max_length=253, pattern=DNS_SUBDOMAIN),
    "apiKeySecretKey": Rule("string", default="api-key", min_length=1, max_length=253, pattern=SECRET_KEY),
}
AUTOSCALING_FIELDS: Schema = {
    "minReplicas": Rule("integer", default=1, minimum=1, maximum=100),
    "maxReplicas": Rule("integer", required=True, minimum=1, maximum=100),
    "targetCPUUtilizationPercentage": Rule("integer", default=70, minimum=1, maximum=100),
}


def _uri(builtins: tuple[str, ...] = ()) -> Rule:
    return Rule("uri", min_length=1, max_length=2048, builtins=builtins)


FIELDS: Schema = {
    "fineTune": Rule("string", min_length=1, max_length=253, pattern=DNS_SUBDOMAIN),
    "lora": _uri(),
    "loraSha256": Rule("string", pattern=SHA256_HEX),
    "baseModel": _uri(("builtin:tiny", "builtin:tiny-mid")),
    "baseModelRevision": Rule("string", min_length=1, max_length=255, pattern=REVISION),
    "accelerator": Rule("string", default="neuron", enum=ACCELERATORS),
    "neuron": NEURON_FIELDS,
    "loraScale": Rule("number", default=1.0, minimum=0, maximum=2),
    "replicas": Rule("integer", default=1, minimum=0, maximum=100),
    "server": {
        "maxBatch": Rule("integer", default=1, minimum=1, maximum=16),
        "queueSize": Rule("integer", default=8, minimum=1, maximum=1024),
        "requestTimeoutSeconds": Rule("integer", default=300, minimum=1, maximum=3600),
    },
    "resources": {
        "cpu": Rule("quantity", max_length=32),
        "memory": Rule("quantity", max_length=32),
        "nodeSelector": Rule("labels", default={}, max_items=32, max_length=63),
        "tolerations": Rule("tolerations", default=[], max_items=32),
    },
    "auth": AUTH_FIELDS,
    "autoscaling": AUTOSCALING_FIELDS,
}


def validate_deployment_spec(spec: object) -> list[str]:
    """All problems with ``spec`` as ``spec.<field>: <what is wrong>`` messages; empty when valid."""
    if not isinstance(spec, Mapping):
        return ["spec: must be an object with fineTune (or lora and baseModel)"]
    errors = check_fields(spec, FIELDS, "spec")
    has_finetune, has_lora = bool(spec.get("fineTune")), bool(spec.get("lora"))
    if has_finetune == has_lora:
        errors.append("spec: set exactly one of spec.fineTune (the name of an SDXLFineTune in this namespace) "
                      "or spec.lora (the URI of a LoRA file or folder)")
    if has_lora and not spec.get("baseModel"):
        errors.append("spec.baseModel: required with spec.lora: name the model the LoRA was trained on, for "
                      "example stabilityai/stable-diffusion-xl-base-1.0")
    if spec.get("loraSha256") and not has_lora:
        errors.append("spec.loraSha256: pins the file named by spec.lora; with spec.fineTune the digest comes "
                      "from the fine-tune's status, so remove spec.loraSha256")
    accelerator = spec.get("accelerator") or "neuron"
    if spec.get("neuron") is not None and accelerator != "neuron":
        errors.append(f"spec.neuron: only allowed with spec.accelerator: neuron (it is {accelerator}); remove "
                      "spec.neuron or set spec.accelerator to neuron")
    auth = spec.get("auth")
    secret_key = auth.get("apiKeySecretKey") if isinstance(auth, Mapping) else None
    if isinstance(secret_key, str) and (secret_key == "." or secret_key.startswith("..")):
        # The CRD's CEL rule; Kubernetes refuses such a key in the Secret volume of the server pods.
        errors.append(f"spec.auth.apiKeySecretKey: must be a valid Secret key, not '.' and not starting with "
                      f"'..' (got {secret_key!r}); for example api-key")
    scaling = spec.get("autoscaling")
    if isinstance(scaling, Mapping):
        low, high = scaling.get("minReplicas", 1), scaling.get("maxReplicas")
        if isinstance(low, int) and isinstance(high, int) and low > high:
            errors.append(f"spec.autoscaling.minReplicas: must not be greater than spec.autoscaling.maxReplicas "
                          f"({low} > {high})")
    return errors
