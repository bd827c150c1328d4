"""Validation of an SDXLFineTune spec, mirroring the CRD's schema and CEL rules.

The API server enforces the CRD on a real cluster; the operator checks again because objects can
reach it without that (an older CRD, the sandbox's emulator, a CRD installed without validation),
and a bad spec must end as phase Failed / InvalidSpec with a message naming the field, never as a
Job that crashes. ``FIELDS`` is the one table of types, bounds and defaults; a test holds it equal
to ``crds/sdxlfinetunes.sdxl.io.yaml``, and :mod:`sdxl_operator.resolved_spec` fills defaults from it.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sized
from typing import Any, Union

QUANTITY = re.compile(r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$")
S3_URI = re.compile(r"^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/.*)?$")
PVC_URI = re.compile(r"^pvc://[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?(/.*)?$")
REVISION = re.compile(r"^[A-Za-z0-9._/-]+$")
MODULE_NAME = re.compile(r"^[A-Za-z0-9_.]+$")
DEFAULT_BASE_MODEL = "stabilityai/stable-diffusion-xl-base-1.0"
DEFAULT_REVISION = "main"
TOLERATION_OPERATORS = ("Exists", "Equal")
TOLERATION_EFFECTS = ("", "NoSchedule", "PreferNoSchedule", "NoExecute")
MAX_UINT32 = 4294967295


@dataclasses.dataclass(frozen=True)
class Rule:
    """Type, bounds and default of one leaf field."""

    kind: str  # "string" | "integer" | "number" | "boolean" | "uri" | "quantity" | "strings" | "labels" | "tolerations"
    default: Any = None
    required: bool = False
    minimum: float | None = None
    maximum: float | None = None
    exclusive_minimum: bool = False
    multiple_of: int | None = None
    min_length: int | None = None
    max_length: int | None = None
    enum: tuple[str, ...] | None = None
    pattern: re.Pattern[str] | None = None
    builtins: tuple[str, ...] = ()  # allowed builtin:* values for a "uri"
    min_items: int | None = None
    max_items: int | None = None


Schema = Mapping[str, Union[Rule, "Schema"]]

# One toleration, with the API server's limits (a label key is at most 317 characters with its prefix).
_TOLERATION: Schema = {
    "key": Rule("string", max_length=317),
    "operator": Rule("string", enum=TOLERATION_OPERATORS),
    "value": Rule("string", max_length=63),
    "effect": Rule("string", enum=TOLERATION_EFFECTS),
    "tolerationSeconds": Rule("integer"),
}


def _uri(builtins: tuple[str, ...] = (), **kwargs: Any) -> Rule:
    return Rule("uri", min_length=1, max_length=2048, builtins=builtins, **kwargs)


FIELDS: Schema = {
    "baseModel": _uri(("builtin:tiny", "builtin:tiny-mid"), default=DEFAULT_BASE_MODEL),
    "baseModelRevision": Rule("string", default=DEFAULT_REVISION, min_length=1, max_length=255, pattern=REVISION),
    "vae": _uri(),
    "instanceImages": _uri(("builtin:sample-subject",), required=True),
    "instancePrompt": Rule("string", required=True, min_length=1, max_length=1000),
    "classPrompt": Rule("string", min_length=1, max_length=1000),
    "priorPreservation": {
        "enabled": Rule("boolean", default=False),
        "numClassImages": Rule("integer", default=100, minimum=1, maximum=10000),
        "lossWeight": Rule("number", default=1.0, minimum=0, maximum=10),
        "classImages": _uri(),
    },
    "training": {
        "maxSteps": Rule("integer", default=500, minimum=1, maximum=100000),
        "learningRate": Rule("number", default=1e-4, minimum=0, exclusive_minimum=True, maximum=1),
        "textEncoderLearningRate": Rule("number", default=5e-6, minimum=0, exclusive_minimum=True, maximum=1),
        "rank": Rule("integer", default=4, minimum=1, maximum=256),
        "alpha": Rule("number", default=4, minimum=0, exclusive_minimum=True, maximum=1024),
        "targetModules": Rule(
            "strings", default=["to_q", "to_k", "to_v", "to_out.0"], min_items=1, max_items=32,
            min_length=1, max_length=128, pattern=MODULE_NAME,
        ),
        "resolution": Rule("integer", default=1024, minimum=64, maximum=2048, multiple_of=8),
        "batchSize": Rule("integer", default=1, minimum=1, maximum=64),
        "gradientAccumulation": Rule("integer", default=4, minimum=1, maximum=128),
        "trainTextEncoder": Rule("boolean", default=False),
        "mixedPrecision": Rule("string", default="bf16", enum=("no", "fp16", "bf16")),
        "gradientCheckpointing": Rule("boolean", default=True),
        "optimizer": Rule("string", default="adamw", enum=("adamw", "adamw8bit", "prodigy")),
        "lrScheduler": Rule(
            "string", default="constant", enum=("constant", "constant_with_warmup", "linear", "cosine")
        ),
        "lrWarmupSteps": Rule("integer", default=0, minimum=0, maximum=100000),
        "snrGamma": Rule("number", default=5.0, minimum=0, maximum=100),
        "noiseOffset": Rule("number", default=0.0, minimum=0, maximum=1),
        "maxGradNorm": Rule("number", default=1.0, minimum=0, exclusive_minimum=True, maximum=1000),
        "seed": Rule("integer", default=42, minimum=0, maximum=MAX_UINT32),
        "checkpointEvery": Rule("integer", default=250, minimum=0, maximum=100000),
        "crop": Rule("string", default="center", enum=("center", "face")),
        "randomFlip": Rule("boolean", default=True),
    },
    "validation": {
        "prompts": Rule("strings", default=[], max_items=16, min_length=1, max_length=1000),
        "every": Rule("integer", default=0, minimum=0, maximum=100000),
        "numInferenceSteps": Rule("integer", default=25, minimum=1, maximum=200),
        "guidanceScale": Rule("number", default=5.0, minimum=0, maximum=30),
        "seed": Rule("integer", default=0, minimum=0, maximum=MAX_UINT32),
    },
    "output": _uri(),
    "resources": {
        "gpus": Rule("integer", default=1, minimum=0, maximum=8),
        "cpu": Rule("quantity", default="8", max_length=32),
        "memory": Rule("quantity", default="32Gi", max_length=32),
        "nodeSelector": Rule("labels", default={}, max_items=32, max_length=63),
        "tolerations": Rule("tolerations", default=[], max_items=32),
    },
}

# Fields whose URI must name writable storage (no builtin:), and those builtin: names are refused for.
_BUILTIN_HINTS = {
    "vae": "there is no embedded VAE: leave vae unset with builtin models",
    "priorPreservation.classImages": "there is no embedded class image set: leave classImages unset to generate them",
    "output": "output must be writable storage (s3://, pvc:// or a path), not a builtin: name",
    # SDXLDeployment.spec.lora (deployment_validation reuses these checks)
    "lora": "there is no embedded LoRA: name a LoRA file, or use spec.fineTune",
}


def validate_finetune_spec(spec: object) -> list[str]:
    """All problems with ``spec`` as ``spec.<field>: <what is wrong>`` messages; empty when valid."""
    if not isinstance(spec, Mapping):
        return ["spec: must be an object with at least instanceImages and instancePrompt"]
    errors = _check_object(spec, FIELDS, "spec")
    prior = spec.get("priorPreservation")
    if isinstance(prior, Mapping) and prior.get("enabled") is True and not spec.get("classPrompt"):
        errors.append(
            "spec.classPrompt: required when spec.priorPreservation.enabled is true: it describes the class "
            'images, for example "a photo of a person"'
        )
    return errors


def check_fields(value: Mapping[str, Any], schema: Schema, path: str) -> list[str]:
    """Problems of ``value`` against a field table like :data:`FIELDS` (shared with other specs)."""
    return _check_object(value, schema, path)


def _check_object(value: Mapping[str, Any], schema: Schema, path: str) -> list[str]:
    errors: list[str] = []
    for key in value:
        if key not in schema:
            errors.append(f"{path}.{key}: unknown field (known: {', '.join(schema)})")
    for key, rule in schema.items():
        where = f"{path}.{key}"
        present = key in value and value[key] is not None
        if isinstance(rule, Rule):
            if not present:
                if rule.required:
                    errors.append(f"{where}: required")
                continue
            errors.extend(_check_leaf(value[key], rule, where))
        elif present:
            if isinstance(value[key], Mapping):
                errors.extend(_check_object(value[key], rule, where))
            else:
                errors.append(f"{where}: must be an object, got {_show(value[key])}")
    return errors


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _check_leaf(value: Any, rule: Rule, where: str) -> list[str]:
    if rule.kind in ("string", "uri", "quantity"):
        if not isinstance(value, str):
            hint = ' (quote it: "8")' if rule.kind == "quantity" and isinstance(value, (int, float)) else ""
            return [f"{where}: must be a string, got {_show(value)}{hint}"]
        return _check_text(value, rule, where)
    if rule.kind == "boolean":
        return [] if isinstance(value, bool) else [f"{where}: must be true or false, got {_show(value)}"]
    if rule.kind in ("integer", "number"):
        return _check_number(value, rule, where)
    if rule.kind == "strings":
        return _check_strings(value, rule, where)
    if rule.kind == "labels":
        return _check_labels(value, rule, where)
    if rule.kind == "tolerations":
        return _check_tolerations(value, rule, where)
    raise AssertionError(f"unknown rule kind {rule.kind!r}")  # a bug in FIELDS, not user input


def _check_text(value: str, rule: Rule, where: str) -> list[str]:
    if rule.min_length is not None and len(value) < rule.min_length:
        return [f"{where}: must not be empty"]
    if rule.max_length is not None and len(value) > rule.max_length:
        return [f"{where}: must be at most {rule.max_length} characters, got {len(value)}"]
    if rule.enum is not None and value not in rule.enum:
        return [f"{where}: must be one of {', '.join(rule.enum)}, got {_show(value)}"]
    if rule.pattern is not None and not rule.pattern.match(value):
        return [f"{where}: {_show(value)} does not match {rule.pattern.pattern}"]
    if rule.kind == "quantity" and not QUANTITY.match(value):
        return [f'{where}: {_show(value)} is not a Kubernetes quantity (e.g. "8", "500m", "32Gi")']
    if rule.kind == "uri":
        return _check_uri(value, rule, where)
    return []


def _check_uri(value: str, rule: Rule, where: str) -> list[str]:
    if value.startswith("s3://") and not S3_URI.match(value):
        return [f"{where}: an s3:// URI names a bucket and an optional prefix: s3://bucket/prefix, got {_show(value)}"]
    if value.startswith("pvc://") and not PVC_URI.match(value):
        return [
            f"{where}: a pvc:// URI names a PersistentVolumeClaim in this namespace and an optional path "
            f"inside it: pvc://claim/path, got {_show(value)}"
        ]
    if value.startswith("builtin:") and value not in rule.builtins:
        field = where.removeprefix("spec.")
        if field in _BUILTIN_HINTS:
            return [f"{where}: {_BUILTIN_HINTS[field]}"]
        return [f"{where}: the embedded choices are {', '.join(rule.builtins)}, got {_show(value)}"]
    return []


def _check_number(value: Any, rule: Rule, where: str) -> list[str]:
    integral = isinstance(value, int) and not isinstance(value, bool)
    if rule.kind == "integer" and not integral:
        return [f"{where}: must be a whole number, got {_show(value)}"]
    if rule.kind == "number" and not (integral or isinstance(value, float)):
        return [f"{where}: must be a number, got {_show(value)}"]
    if rule.minimum is not None:
        if rule.exclusive_minimum and value <= rule.minimum:
            return [f"{where}: must be greater than {rule.minimum:g}, got {value}"]
        if value < rule.minimum:
            return [f"{where}: must be at least {rule.minimum:g}, got {value}"]
    if rule.maximum is not None and value > rule.maximum:
        return [f"{where}: must be at most {rule.maximum:g}, got {value}"]
    if rule.multiple_of is not None and value % rule.multiple_of:
        return [f"{where}: must be a multiple of {rule.multiple_of}, got {value}"]
    return []


def _count_errors(value: Sized, rule: Rule, where: str, unit: str) -> list[str]:
    if rule.min_items is not None and len(value) < rule.min_items:
        return [f"{where}: needs at least {rule.min_items} item(s)"]
    if rule.max_items is not None and len(value) > rule.max_items:
        return [f"{where}: at most {rule.max_items} {unit}, got {len(value)}"]
    return []


def _check_strings(value: Any, rule: Rule, where: str) -> list[str]:
    if not isinstance(value, list):
        return [f"{where}: must be a list of strings, got {_show(value)}"]
    if too_few_or_many := _count_errors(value, rule, where, "items"):
        return too_few_or_many
    item_rule = dataclasses.replace(rule, kind="string")
    errors: list[str] = []
    for index, item in enumerate(value):
        errors.extend(_check_leaf(item, item_rule, f"{where}[{index}]"))
    return errors


def _check_labels(value: Any, rule: Rule, where: str) -> list[str]:
    if not isinstance(value, Mapping):
        return [f"{where}: must be an object of label: value strings, got {_show(value)}"]
    if too_many := _count_errors(value, rule, where, "entries"):
        return too_many
    errors: list[str] = []
    for key, item in value.items():
        if not isinstance(item, str):
            errors.append(f"{where}.{key}: must be a string, got {_show(item)}")
        elif rule.max_length is not None and len(item) > rule.max_length:
            errors.append(f"{where}.{key}: must be at most {rule.max_length} characters")
    return errors


def _check_tolerations(value: Any, rule: Rule, where: str) -> list[str]:
    if not isinstance(value, list):
        return [f"{where}: must be a list of tolerations, got {_show(value)}"]
    if too_many := _count_errors(value, rule, where, "items"):
        return too_many
    errors: list[str] = []
    for index, item in enumerate(value):
        if not isinstance(item, Mapping):
            errors.append(f"{where}[{index}]: must be an object like {{key, operator, value, effect}}")
        else:
            errors.extend(_check_object(item, _TOLERATION, f"{where}[{index}]"))
    return errors
