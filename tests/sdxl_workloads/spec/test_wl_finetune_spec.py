"""SDXLFineTune spec parsing: the contract's defaults and one precise error per bad field."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from sdxl_workloads.protocol import WorkloadError
from sdxl_workloads.spec.finetune_spec import load_finetune_spec

MINIMAL = {"instanceImages": "builtin:sample-subject", "instancePrompt": "a photo of sks person"}

def _with(path: str, value: Any) -> dict[str, Any]:
    """MINIMAL with the dotted `path` set to `value`."""
    spec = copy.deepcopy(MINIMAL)
    node: dict[str, Any] = spec
    *parents, leaf = path.split(".")
    for key in parents:
        node = node.setdefault(key, {})
    node[leaf] = value
    return spec


# The defaults themselves are the CRD's: tests/contract/test_crd_defaults_contract.py holds them against
# the project's table and this loader against the CRD, so they are written out once, there.
def test_validation_prompts_default_to_the_instance_prompt() -> None:
    spec = load_finetune_spec(MINIMAL)
    assert spec.validation.prompts == []
    assert spec.validation_prompts == ["a photo of sks person"]


def test_defaults_are_not_shared_between_specs() -> None:
    first, second = load_finetune_spec(MINIMAL), load_finetune_spec(MINIMAL)
    first.training.target_modules.append("proj_in")
    assert second.training.target_modules == ["to_q", "to_k", "to_v", "to_out.0"]


def test_a_full_spec_round_trips() -> None:
    full = load_finetune_spec(MINIMAL).to_dict()
    full["training"].update(rank=16, alpha=8, resolution=512, optimizer="prodigy", crop="face",
                            mixedPrecision="fp16", lrScheduler="cosine", learningRate=1.0)
    full["priorPreservation"].update(enabled=True, classImages="s3://bucket/class")
    full["classPrompt"] = "a photo of a person"
    full["validation"]["prompts"] = ["sks person on the moon"]
    full["resources"].update(nodeSelector={"pool": "gpu"},
                             tolerations=[{"key": "nvidia.com/gpu", "operator": "Exists"}])
    spec = load_finetune_spec(full)
    assert spec.to_dict() == {**full, "training": {**full["training"], "alpha": 8.0, "learningRate": 1.0}}
    assert spec.training.rank == 16 and spec.training.crop == "face"
    assert spec.validation_prompts == ["sks person on the moon"]


@pytest.mark.parametrize(("path", "value", "attribute", "expected"), [
    ("training.alpha", 8, ("training", "alpha"), 8.0),  # an integer where a number is expected
    ("training.maxSteps", 20.0, ("training", "max_steps"), 20),  # JSON writers' 20.0
    ("resources.cpu", "500m", ("resources", "cpu"), "500m"),
    ("baseModel", "builtin:tiny-mid", ("base_model",), "builtin:tiny-mid"),
    ("baseModel", "s3://my-bucket/models/sdxl", ("base_model",), "s3://my-bucket/models/sdxl"),
    ("instanceImages", "pvc://photos/alice", ("instance_images",), "pvc://photos/alice"),
    ("output", "./out", ("output",), "./out"),
    ("vae", None, ("vae",), None),
    ("training.resolution", 64, ("training", "resolution"), 64),
    ("training.resolution", 2048, ("training", "resolution"), 2048),
    ("training.snrGamma", 0, ("training", "snr_gamma"), 0.0),  # 0 = Min-SNR off
    ("training.checkpointEvery", 0, ("training", "checkpoint_every"), 0),  # 0 = never
    ("baseModelRevision", "v1.0", ("base_model_revision",), "v1.0"),
])
def test_accepted_values(path: str, value: Any, attribute: tuple[str, ...], expected: Any) -> None:
    node: Any = load_finetune_spec(_with(path, value))
    for name in attribute:
        node = getattr(node, name)
    assert node == expected
    assert type(node) is type(expected)


BAD_SPECS = [
    # (what, spec, expected message)
    ("missing instanceImages", {"instancePrompt": "x"}, "spec.instanceImages: required field is missing"),
    ("missing instancePrompt", {"instanceImages": "x"}, "spec.instancePrompt: required field is missing"),
    ("blank prompt", _with("instancePrompt", "  "), "spec.instancePrompt: must be a text that is not blank, got '  '"),
    ("empty prompt", _with("instancePrompt", ""), "spec.instancePrompt: must not be empty"),
    ("prompt too long", _with("instancePrompt", "x" * 1001),
     "spec.instancePrompt: must have at most 1000 characters, got 1001"),
    ("prompt not a string", _with("instancePrompt", 5), "spec.instancePrompt: must be a string, got an integer (5)"),
    ("unknown top-level field", _with("instancePromt", "x"),
     "spec.instancePromt: unknown field; did you mean instancePrompt?"),
    ("snake_case field", _with("training.max_steps", 10), "spec.training.max_steps: unknown field; did you mean maxSteps?"),
    ("misspelled nested field", _with("training.lerningRate", 1e-4),
     "spec.training.lerningRate: unknown field; did you mean learningRate?"),
    ("nonsense field", _with("training.zzz", 1), "spec.training.zzz: unknown field; known fields: maxSteps, "),
    ("zero steps", _with("training.maxSteps", 0), "spec.training.maxSteps: must be between 1 and 100000, got 0"),
    ("negative steps", _with("training.maxSteps", -5), "spec.training.maxSteps: must be between 1 and 100000, got -5"),
    ("too many steps", _with("training.maxSteps", 100001), "spec.training.maxSteps: must be between 1 and 100000"),
    ("steps as text", _with("training.maxSteps", "500"), "spec.training.maxSteps: must be an integer, got a string ('500')"),
    ("fractional steps", _with("training.maxSteps", 2.5), "spec.training.maxSteps: must be an integer, got a number (2.5)"),
    ("boolean steps", _with("training.maxSteps", True), "spec.training.maxSteps: must be an integer, got a boolean"),
    ("zero rank", _with("training.rank", 0), "spec.training.rank: must be between 1 and 256, got 0"),
    ("huge rank", _with("training.rank", 512), "spec.training.rank: must be between 1 and 256, got 512"),
    ("zero learning rate", _with("training.learningRate", 0),
     "spec.training.learningRate: must be greater than 0 and at most 1, got 0"),
    ("learning rate above 1", _with("training.learningRate", 2),
     "spec.training.learningRate: must be greater than 0 and at most 1, got 2"),
    ("zero alpha", _with("training.alpha", 0), "spec.training.alpha: must be greater than 0 and at most 1024, got 0"),
    ("resolution not a multiple of 8", _with("training.resolution", 1020),
     "spec.training.resolution: must be a multiple of 8 (the VAE downsamples by 8), got 1020"),
    ("resolution too small", _with("training.resolution", 32),
     "spec.training.resolution: must be between 64 and 2048 (the VAE downsamples by 8), got 32"),
    ("resolution too large", _with("training.resolution", 4096), "spec.training.resolution: must be between 64 and 2048"),
    ("unknown optimizer", _with("training.optimizer", "sgd"),
     "spec.training.optimizer: must be one of adamw, adamw8bit, prodigy, got 'sgd'"),
    ("optimizer case", _with("training.optimizer", "AdamW"),
     "spec.training.optimizer: must be one of adamw, adamw8bit, prodigy, got 'AdamW' (did you mean adamw?)"),
    ("unknown precision", _with("training.mixedPrecision", "fp8"), "spec.training.mixedPrecision: must be one of no, fp16, bf16"),
    ("unknown scheduler", _with("training.lrScheduler", "step"), "spec.training.lrScheduler: must be one of constant,"),
    ("unknown crop", _with("training.crop", "smart"), "spec.training.crop: must be one of center, face, got 'smart'"),
    ("noise offset too big", _with("training.noiseOffset", 1.5), "spec.training.noiseOffset: must be between 0 and 1, got 1.5"),
    ("negative snr gamma", _with("training.snrGamma", -1), "spec.training.snrGamma: must be between 0 and 100, got -1"),
    ("batch size zero", _with("training.batchSize", 0), "spec.training.batchSize: must be between 1 and 64, got 0"),
    ("accumulation too big", _with("training.gradientAccumulation", 129), "spec.training.gradientAccumulation: must be between 1 and 128"),
    ("boolean as text", _with("training.randomFlip", "yes"), "spec.training.randomFlip: must be true or false, got a string ('yes')"),
    ("empty target modules", _with("training.targetModules", []), "spec.training.targetModules: must not be empty"),
    ("target modules not a list", _with("training.targetModules", "to_q"), "spec.training.targetModules: must be a list, got a string"),
    ("empty target module", _with("training.targetModules", ["to_q", ""]), "spec.training.targetModules[1]: must not be empty"),
    ("training not a mapping", _with("training", [1]), "spec.training: must be a mapping of fields, got a list"),
    ("class images count zero", _with("priorPreservation.numClassImages", 0),
     "spec.priorPreservation.numClassImages: must be between 1 and 10000, got 0"),
    ("prior loss weight", _with("priorPreservation.lossWeight", 11), "spec.priorPreservation.lossWeight: must be between 0 and 10"),
    ("prior without class prompt", _with("priorPreservation.enabled", True),
     "spec.classPrompt: required when spec.priorPreservation.enabled is true"),
    ("validation prompt not text", _with("validation.prompts", ["ok", 3]), "spec.validation.prompts[1]: must be a string"),
    ("validation steps zero", _with("validation.numInferenceSteps", 0), "spec.validation.numInferenceSteps: must be between 1 and 200"),
    ("too many validation prompts", _with("validation.prompts", ["p"] * 17),
     "spec.validation.prompts: must have at most 16 items, got 17"),
    ("guidance too high", _with("validation.guidanceScale", 31), "spec.validation.guidanceScale: must be between 0 and 30"),
    ("cpu as a number", _with("resources.cpu", 8), "spec.resources.cpu: must be a string, got an integer (8)"),
    ("cpu not a quantity", _with("resources.cpu", "eight"), "spec.resources.cpu: must be a Kubernetes quantity"),
    ("target module pattern", _with("training.targetModules", ["to q"]), "spec.training.targetModules[0]: must match"),
    ("zero grad norm", _with("training.maxGradNorm", 0), "spec.training.maxGradNorm: must be greater than 0 and at most 1000"),
    ("s3 without bucket", _with("instanceImages", "s3://"),
     "spec.instanceImages: an s3:// URI names a bucket and an optional prefix: s3://bucket/prefix, got 's3://'"),
    ("pvc uppercase claim", _with("output", "pvc://Claim/x"), "spec.output: a pvc:// URI names a PersistentVolumeClaim"),
    ("unknown builtin model", _with("baseModel", "builtin:huge"),
     "spec.baseModel: the embedded models are builtin:tiny, builtin:tiny-mid and builtin:world, got 'builtin:huge'"),
    ("builtin images elsewhere", _with("instanceImages", "builtin:tiny"),
     "spec.instanceImages: the embedded image sets are builtin:sample-subject and builtin:world-subject"),
    ("builtin vae", _with("vae", "builtin:tiny"), "spec.vae: there is no embedded VAE"),
    ("builtin class images", _with("priorPreservation.classImages", "builtin:sample-subject"),
     "spec.priorPreservation.classImages: there is no embedded class image set"),
    ("builtin output", _with("output", "builtin:tiny"), "spec.output: output must be writable storage"),
    ("revision pattern", _with("baseModelRevision", "a b"), "spec.baseModelRevision: must match"),
    ("validation every negative", _with("validation.every", -1), "spec.validation.every: must be between 0 and 100000, got -1"),
    ("gpus too many", _with("resources.gpus", 9), "spec.resources.gpus: must be between 0 and 8, got 9"),
    ("node selector not a mapping", _with("resources.nodeSelector", ["a"]), "spec.resources.nodeSelector: must be a mapping"),
    ("node selector value", _with("resources.nodeSelector", {"pool": 1}), "spec.resources.nodeSelector.pool: must be a string"),
    ("empty output", _with("output", ""), "spec.output: must not be empty"),
    ("spec not a mapping", ["a"], "spec: must be a mapping of fields, got a list"),
]


@pytest.mark.parametrize(("what", "spec", "message"), BAD_SPECS, ids=[case[0] for case in BAD_SPECS])
def test_bad_specs_name_the_field(what: str, spec: Any, message: str) -> None:
    with pytest.raises(WorkloadError) as err:
        load_finetune_spec(spec)
    assert err.value.reason == "InvalidInput"
    assert err.value.message.startswith(message), err.value.message
