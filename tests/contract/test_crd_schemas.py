"""The CRDs in crds/: structure, `kubectl explain` documentation, examples and CEL rules.

No apiserver runs here: the product's own evaluator, `sdxl_contract.schema` (the `crd_validation`
fixture), applies the schema's defaults, validates the structural schema and evaluates the CEL rules
with cel-python, as the apiserver would.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
CRD_DIR = REPO_ROOT / "crds"
EXAMPLES = sorted((CRD_DIR / "examples").glob("*.yaml"))
INVALID_EXAMPLES = sorted((CRD_DIR / "examples" / "invalid").glob("*.yaml"))
CRDS = {
    "sdxlfinetunes.sdxl.io.yaml": ("SDXLFineTune", "sdxlfinetunes", "sdxlfinetune", "sdxlft"),
    "sdxldeployments.sdxl.io.yaml": ("SDXLDeployment", "sdxldeployments", "sdxldeployment", "sdxldep"),
}
DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
EXPECT_HEADER = re.compile(r"^# expect: (?P<text>.+)$")

Validator = Callable[..., list[str]]


def _load(path: Path) -> dict[str, Any]:
    documents = list(yaml.safe_load_all(path.read_text(encoding="utf-8")))
    assert len(documents) == 1, f"{path.name}: expected one YAML document, found {len(documents)}"
    document: dict[str, Any] = documents[0]
    return document


def _crd_for(obj: dict[str, Any]) -> Path:
    for file_name, (kind, *_) in CRDS.items():
        if obj.get("kind") == kind:
            return CRD_DIR / file_name
    raise AssertionError(f"no CRD for kind {obj.get('kind')!r}")


def _expected_error(path: Path) -> str:
    match = EXPECT_HEADER.match(path.read_text(encoding="utf-8").splitlines()[0])
    assert match, f"{path.name}: the first line must be '# expect: <part of the expected error>'"
    return match.group("text").strip()


def _schema(crd_validation: ModuleType, file_name: str) -> dict[str, Any]:
    schema: dict[str, Any] = crd_validation.load_crd(CRD_DIR / file_name).schema
    return schema


def _node_at(schema: dict[str, Any], dotted: str) -> dict[str, Any]:
    node = schema
    for part in dotted.strip(".").split("."):
        node = node["properties"][part]
    return node


# --- the CRD objects themselves ---------------------------------------------------------------


@pytest.mark.parametrize("file_name", sorted(CRDS))
def test_crd_identity_names_and_subresources(file_name: str) -> None:
    crd = _load(CRD_DIR / file_name)
    kind, plural, singular, short = CRDS[file_name]
    assert crd["apiVersion"] == "apiextensions.k8s.io/v1"
    assert crd["kind"] == "CustomResourceDefinition"
    assert crd["metadata"]["name"] == f"{plural}.sdxl.io"
    assert crd["spec"]["group"] == "sdxl.io"
    assert crd["spec"]["scope"] == "Namespaced"
    names = crd["spec"]["names"]
    assert (names["kind"], names["plural"], names["singular"]) == (kind, plural, singular)
    assert names["shortNames"] == [short]
    assert names["categories"] == ["sdxl"], "`kubectl get sdxl` must list both kinds"
    [version] = crd["spec"]["versions"]
    assert (version["name"], version["served"], version["storage"]) == ("v1alpha1", True, True)
    assert version["subresources"]["status"] == {}, "the operator writes status through /status"


@pytest.mark.parametrize("kubernetes_version", ["1.29", "1.33"])
@pytest.mark.parametrize("file_name", sorted(CRDS))
def test_crd_manifest_matches_the_apiextensions_schema(file_name: str, kubernetes_version: str) -> None:
    """Every key of the CRD object itself is a real CustomResourceDefinition field (oldest supported and
    a recent Kubernetes)."""
    import kubernetes_validate

    kubernetes_validate.validate(_load(CRD_DIR / file_name), kubernetes_version, strict=True)


def test_scale_subresource_points_at_declared_integer_fields(crd_validation: ModuleType) -> None:
    crd = _load(CRD_DIR / "sdxldeployments.sdxl.io.yaml")
    scale = crd["spec"]["versions"][0]["subresources"]["scale"]
    schema = _schema(crd_validation, "sdxldeployments.sdxl.io.yaml")
    assert _node_at(schema, scale["specReplicasPath"])["type"] == "integer"
    assert _node_at(schema, scale["statusReplicasPath"])["type"] == "integer"


@pytest.mark.parametrize(
    ("file_name", "columns"),
    [
        ("sdxlfinetunes.sdxl.io.yaml", ["Phase", "Step", "Loss", "Age"]),
        ("sdxldeployments.sdxl.io.yaml", ["Phase", "Accelerator", "Ready", "Adapters", "URL", "Age"]),
    ],
)
def test_printer_columns_show_the_agreed_columns_from_declared_fields(
    crd_validation: ModuleType, file_name: str, columns: list[str]
) -> None:
    crd = _load(CRD_DIR / file_name)
    printer = crd["spec"]["versions"][0]["additionalPrinterColumns"]
    default_columns = [c["name"] for c in printer if c.get("priority", 0) == 0]
    assert [name.upper() for name in default_columns] == [name.upper() for name in columns]
    schema = _schema(crd_validation, file_name)
    json_types = {"string": "string", "integer": "integer", "number": "number", "boolean": "boolean"}
    for column in printer:
        if column["jsonPath"] == ".metadata.creationTimestamp":
            assert column["type"] == "date"
            continue
        node = _node_at(schema, column["jsonPath"])  # KeyError: the column reads an undeclared field
        assert json_types[node["type"]] == column["type"], column["name"]


def test_finetune_columns_read_progress_step_and_loss() -> None:
    printer = _load(CRD_DIR / "sdxlfinetunes.sdxl.io.yaml")["spec"]["versions"][0]["additionalPrinterColumns"]
    paths = {c["name"].upper(): c["jsonPath"] for c in printer}
    assert paths["STEP"] == ".status.progress.step"
    assert paths["LOSS"] == ".status.progress.loss"
    assert paths["PHASE"] == ".status.phase"


@pytest.mark.parametrize("file_name", sorted(CRDS))
def test_schema_is_structural_and_documented_everywhere(crd_validation: ModuleType, file_name: str) -> None:
    schema = _schema(crd_validation, file_name)
    problems = []
    for node, path in crd_validation.iter_schema_nodes(schema):
        if "type" not in node:
            problems.append(f"{path}: no type (structural schemas need one on every node)")
        if path == ".metadata":
            continue  # see test_crd_passes_the_apiservers_own_checks: nothing but its type is allowed
        if not str(node.get("description", "")).strip():
            problems.append(f"{path}: no description (kubectl explain shows nothing)")
        if "x-kubernetes-preserve-unknown-fields" in node:
            problems.append(f"{path}: x-kubernetes-preserve-unknown-fields (every field must be declared)")
        if "properties" in node and "additionalProperties" in node:
            problems.append(f"{path}: properties and additionalProperties together are not structural")
        for keyword in ("allOf", "anyOf", "oneOf", "not"):
            if keyword in node:
                problems.append(f"{path}: {keyword} (keep schemas plain; use CEL for cross-field rules)")
    assert problems == []


def _string_is_bounded(node: dict[str, Any]) -> bool:
    """maxLength, an enum, a date-time, or a fixed-length pattern such as ^[0-9a-f]{64}$."""
    fixed_length = re.fullmatch(r"\^\[[^\]]+\]\{\d+\}\$", node.get("pattern", ""))
    return bool({"maxLength", "enum"} & node.keys()) or node.get("format") == "date-time" or bool(fixed_length)


@pytest.mark.parametrize("file_name", sorted(CRDS))
def test_every_string_list_and_map_is_bounded(crd_validation: ModuleType, file_name: str) -> None:
    """The apiserver estimates CEL cost from these bounds (spec-wide `self == oldSelf` compares all)."""
    schema = _schema(crd_validation, file_name)
    unbounded = []
    for node, path in crd_validation.iter_schema_nodes(schema):
        if path in (".apiVersion", ".kind"):
            continue  # the apiserver's own fields, outside every rule
        kind = node.get("type")
        if kind == "string" and not _string_is_bounded(node):
            unbounded.append(f"{path}: string without maxLength")
        if kind == "array" and "maxItems" not in node:
            unbounded.append(f"{path}: array without maxItems")
        if kind == "object" and isinstance(node.get("additionalProperties"), dict) and "maxProperties" not in node:
            unbounded.append(f"{path}: map without maxProperties")
    assert unbounded == []


@pytest.mark.parametrize("file_name", sorted(CRDS))
def test_crd_passes_the_apiservers_own_checks(crd_validation: ModuleType, file_name: str) -> None:
    """Checks the apiserver makes when the CRD is created (apiextensions validation), which a
    jsonschema run would not notice."""
    schema = _schema(crd_validation, file_name)
    # validateStructuralMetadataInvariants: metadata may say nothing but its type (not even a description).
    assert schema["properties"]["metadata"] == {"type": "object"}
    assert schema["properties"]["apiVersion"]["type"] == "string"
    assert schema["properties"]["kind"]["type"] == "string"
    assert schema["properties"]["status"]["type"] == "object"
    problems = []
    for node, path in crd_validation.iter_schema_nodes(schema):
        if "exclusiveMinimum" in node and "minimum" not in node:
            problems.append(f"{path}: exclusiveMinimum without minimum")
        if "exclusiveMaximum" in node and "maximum" not in node:
            problems.append(f"{path}: exclusiveMaximum without maximum")
        if node.get("x-kubernetes-list-type") == "map":
            keys = node.get("x-kubernetes-list-map-keys", [])
            if not keys or not set(keys) <= set(node["items"].get("required", [])):
                problems.append(f"{path}: list-map keys must be required fields of the items")
        for value in node.get("enum", []):
            plain = {k: v for k, v in node.items() if k not in ("enum", "default")}
            if not _valid(value, plain, crd_validation):
                problems.append(f"{path}: enum value {value!r} does not match the field's type")
        if "default" in node and path.startswith(".metadata"):
            problems.append(f"{path}: defaults are not allowed in metadata")
    assert problems == []
    printer = _load(CRD_DIR / file_name)["spec"]["versions"][0]["additionalPrinterColumns"]
    assert {c["type"] for c in printer} <= {"integer", "number", "string", "boolean", "date"}
    assert all(c.get("priority", 0) in (0, 1) for c in printer)


def _valid(value: Any, node: dict[str, Any], crd_validation: ModuleType) -> bool:
    return crd_validation.structural_errors(value, node) == []


@pytest.mark.parametrize("file_name", sorted(CRDS))
def test_every_default_is_valid_for_its_own_field(crd_validation: ModuleType, file_name: str) -> None:
    """The apiserver rejects a CRD whose defaults do not validate (after their own nested defaults)."""
    schema = _schema(crd_validation, file_name)
    for node, path in crd_validation.iter_schema_nodes(schema):
        if "default" not in node:
            continue
        value = crd_validation.apply_defaults(node["default"], node)
        errors = crd_validation.structural_errors(value, node)
        assert errors == [], f"{path}: default {node['default']!r}: {[e.text for e in errors]}"


@pytest.mark.parametrize("file_name", sorted(CRDS))
def test_cel_rules_compile_and_point_at_declared_fields(crd_validation: ModuleType, file_name: str) -> None:
    crd = crd_validation.load_crd(CRD_DIR / file_name)  # compiling every rule happens here
    assert crd.rules, "the CRD has CEL rules"
    for node, path in crd_validation.iter_schema_nodes(crd.schema):
        for entry in node.get("x-kubernetes-validations", []):
            assert entry.get("message", "").strip(), f"{path}: rule {entry['rule']!r} has no message"
            if "fieldPath" in entry:
                _node_at(node, entry["fieldPath"])  # KeyError: fieldPath names no declared field
            assert entry.get("reason", "FieldValueInvalid") in {
                "FieldValueInvalid", "FieldValueForbidden", "FieldValueRequired", "FieldValueDuplicate"}


@pytest.mark.parametrize("file_name", sorted(CRDS))
def test_failure_reasons_are_the_contracts_closed_list(
    crd_validation: ModuleType, file_name: str
) -> None:
    from sdxl_contract.failure_reasons import ALL_REASONS

    # The CRDs are YAML and cannot import the list: every reason the workloads report, plus those
    # only the operator finds (NameConflict, ...).
    reason = _node_at(_schema(crd_validation, file_name), "status.failure.reason")
    assert set(reason["enum"]) == set(ALL_REASONS)
    for value in ALL_REASONS:  # `kubectl explain` lists each one
        assert value in reason["description"], f"{file_name}: status.failure.reason does not describe {value}"


def test_the_accelerator_enum_is_the_contracts_list_of_accelerators(crd_validation: ModuleType) -> None:
    from sdxl_contract.accelerators import ACCELERATORS

    accelerator = _node_at(_schema(crd_validation, "sdxldeployments.sdxl.io.yaml"), "spec.accelerator")
    assert accelerator["enum"] == list(ACCELERATORS)


# --- examples -----------------------------------------------------------------------------------


def test_examples_cover_both_kinds_and_every_accelerator() -> None:
    objects = [_load(path) for path in EXAMPLES]
    assert {o["kind"] for o in objects} == {"SDXLFineTune", "SDXLDeployment"}
    accelerators = {o["spec"].get("accelerator") for o in objects if o["kind"] == "SDXLDeployment"}
    assert accelerators == {"neuron", "nvidia", "cpu"}
    assert len(INVALID_EXAMPLES) >= 8


@pytest.mark.parametrize("path", EXAMPLES + INVALID_EXAMPLES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_example_is_a_kubernetes_object(path: Path) -> None:
    obj = _load(path)
    assert set(obj) == {"apiVersion", "kind", "metadata", "spec"}, "examples carry no status"
    assert obj["apiVersion"] == "sdxl.io/v1alpha1"
    assert obj["kind"] in {kind for kind, *_ in CRDS.values()}
    # `kubectl apply -n <namespace> -f` (what the chart's NOTES print) refuses a manifest that names
    # another namespace: examples name none and work in any.
    assert "namespace" not in obj["metadata"], f"{path.name}: remove metadata.namespace"
    name = obj["metadata"]["name"]
    if path.name == "uppercase-name.yaml":
        assert not DNS1123_SUBDOMAIN.match(name), "this example exists to show a rejected name"
    else:
        # ≤ 63: the name is also a label value (app.kubernetes.io/instance) on every child object.
        assert DNS1123_SUBDOMAIN.match(name) and len(name) <= 63, name


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_valid_example_is_accepted(crd_validator: Validator, path: Path) -> None:
    obj = _load(path)
    assert crd_validator(obj, _crd_for(obj)) == []


@pytest.mark.parametrize("path", INVALID_EXAMPLES, ids=lambda p: p.name)
def test_invalid_example_is_rejected_with_its_expected_error(crd_validator: Validator, path: Path) -> None:
    obj = _load(path)
    expected = _expected_error(path)
    errors = crd_validator(obj, _crd_for(obj))
    assert any(expected in error for error in errors), errors
    # Each invalid example shows one mistake and is otherwise valid: every error names the same field
    # (a wrongly typed enum field, for one, fails both its type and its enum, as on the apiserver).
    assert len({_field_of(error) for error in errors}) == 1, errors


def _field_of(error: str) -> str:
    unknown = re.match(r'unknown field "(?P<field>[^"]+)"', error)
    return unknown.group("field") if unknown else error.split(":", 1)[0]


def test_tiny_finetune_example_runs_on_two_cpu_cores(crd_validation: ModuleType) -> None:
    """`make demo` and the end-to-end tests train this one on CPU, without network."""
    path = CRD_DIR / "examples" / "finetune-tiny.yaml"
    spec = crd_validation.apply_crd_defaults(_load(path), CRD_DIR / "sdxlfinetunes.sdxl.io.yaml")["spec"]
    assert spec["baseModel"] == "builtin:tiny"
    assert spec["instanceImages"] == "builtin:sample-subject"
    assert "vae" not in spec and spec["priorPreservation"]["enabled"] is False
    training = spec["training"]
    assert training["resolution"] == 64
    assert training["maxSteps"] <= 300
    assert training["mixedPrecision"] == "no" and training["gradientCheckpointing"] is False
    assert spec["resources"]["gpus"] == 0
    assert spec["resources"]["cpu"] == "2"
    assert spec["validation"]["numInferenceSteps"] <= 10


def test_deployment_examples_reference_the_finetune_examples() -> None:
    finetunes = {_load(CRD_DIR / "examples" / name)["metadata"]["name"]
                 for name in ("finetune.yaml", "finetune-tiny.yaml")}
    by_accelerator = {}
    for path in EXAMPLES:
        obj = _load(path)
        if obj["kind"] == "SDXLDeployment" and "fineTune" in obj["spec"]:
            assert obj["spec"]["fineTune"] in finetunes, path.name
            by_accelerator[obj["spec"]["accelerator"]] = obj["spec"]["fineTune"]
    assert by_accelerator["cpu"] == _load(CRD_DIR / "examples" / "finetune-tiny.yaml")["metadata"]["name"]


def test_adapter_set_example_serves_the_tiny_finetunes_base_model_on_cpu() -> None:
    spec = _load(CRD_DIR / "examples" / "deployment-adapters.yaml")["spec"]
    assert spec["baseModel"] == _load(CRD_DIR / "examples" / "finetune-tiny.yaml")["spec"]["baseModel"]
    assert spec["accelerator"] == "cpu" and spec["fineTuneSelector"]["matchLabels"]


def test_realistic_finetune_example_uses_the_hub_model_s3_photos_and_prior_preservation() -> None:
    spec = _load(CRD_DIR / "examples" / "finetune.yaml")["spec"]
    assert spec["baseModel"] == "stabilityai/stable-diffusion-xl-base-1.0"
    assert spec["vae"] == "madebyollin/sdxl-vae-fp16-fix"
    assert spec["instanceImages"].startswith("s3://")
    assert spec["priorPreservation"]["enabled"] is True
    assert spec["classPrompt"] == "a photo of a person"
    assert spec["training"]["resolution"] == 1024 and spec["training"]["mixedPrecision"] == "bf16"
    assert spec["training"]["checkpointEvery"] > 0 and spec["validation"]["prompts"]


# --- CEL rules on updates -----------------------------------------------------------------------


@pytest.fixture
def tiny_finetune() -> dict[str, Any]:
    return _load(CRD_DIR / "examples" / "finetune-tiny.yaml")


def test_finetune_spec_change_is_rejected_with_advice(
    crd_validator: Validator, finetune_crd_path: Path, tiny_finetune: dict[str, Any]
) -> None:
    changed = copy.deepcopy(tiny_finetune)
    changed["spec"]["training"]["maxSteps"] = 300
    errors = crd_validator(changed, finetune_crd_path, old=tiny_finetune)
    assert len(errors) == 1, errors
    assert errors[0].startswith("spec: Invalid value")
    assert "immutable" in errors[0] and "create a new SDXLFineTune with a new name" in errors[0]


def test_finetune_update_with_identical_spec_is_accepted(
    crd_validator: Validator, finetune_crd_path: Path, tiny_finetune: dict[str, Any]
) -> None:
    updated = copy.deepcopy(tiny_finetune)
    updated["metadata"]["labels"] = {"team": "vision"}
    updated["status"] = {"phase": "Training", "progress": {"step": 10, "totalSteps": 200, "loss": 0.2}}
    assert crd_validator(updated, finetune_crd_path, old=tiny_finetune) == []


def test_finetune_spec_that_only_spells_out_defaults_counts_as_unchanged(
    crd_validator: Validator, finetune_crd_path: Path, tiny_finetune: dict[str, Any]
) -> None:
    """The apiserver stores defaulted objects, so re-applying with a default written out is no change."""
    explicit = copy.deepcopy(tiny_finetune)
    explicit["spec"]["training"]["batchSize"] = 1
    explicit["spec"]["validation"]["every"] = 0
    assert crd_validator(explicit, finetune_crd_path, old=tiny_finetune) == []


def test_finetune_create_is_not_held_to_the_immutability_rule(
    crd_validator: Validator, finetune_crd_path: Path, tiny_finetune: dict[str, Any]
) -> None:
    assert crd_validator(tiny_finetune, finetune_crd_path, old=None) == []


def test_deployment_spec_stays_mutable(crd_validator: Validator, deployment_crd_path: Path) -> None:
    old = _load(CRD_DIR / "examples" / "deployment-cpu.yaml")
    new = copy.deepcopy(old)
    new["spec"]["replicas"] = 3
    new["spec"]["loraScale"] = 0.5
    assert crd_validator(new, deployment_crd_path, old=old) == []


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"accelerator": "nvidia", "neuron": {"height": 768}}, "spec.neuron: Forbidden"),
        ({"neuron": {"height": 768}}, None),  # accelerator defaults to neuron
        ({"accelerator": "neuron", "neuron": {}}, None),
        ({"loraSha256": "a" * 64}, "spec.loraSha256: Forbidden"),
        ({"autoscaling": {"maxReplicas": 3}}, None),  # minReplicas defaults to 1
        ({"autoscaling": {"minReplicas": 4, "maxReplicas": 3}}, "minReplicas must not be greater"),
        ({"autoscaling": {"minReplicas": 3, "maxReplicas": 3}}, None),
        # Scaling on the server's queue or in-flight gauge: a target per pod, greater than 0, not with cpu.
        ({"autoscaling": {"maxReplicas": 4, "metric": "queueDepth", "target": 2}}, None),
        ({"autoscaling": {"maxReplicas": 4, "metric": "inFlight", "target": 0.5}}, None),
        ({"autoscaling": {"maxReplicas": 4, "metric": "queueDepth"}},
         "spec.autoscaling.target: Required value: spec.autoscaling.target is required with metric queueDepth"),
        ({"autoscaling": {"maxReplicas": 4, "metric": "queueDepth", "target": 0}},
         "spec.autoscaling.target must be greater than 0"),
        ({"autoscaling": {"maxReplicas": 4, "metric": "inFlight", "target": -1.5}},
         "spec.autoscaling.target must be greater than 0"),
        ({"autoscaling": {"maxReplicas": 4, "target": 2}}, "spec.autoscaling.target: Forbidden"),
        ({"autoscaling": {"maxReplicas": 4, "metric": "queueDepth", "target": 1001}},
         "spec.autoscaling.target: Invalid value"),
        ({"autoscaling": {"maxReplicas": 4, "metric": "latency", "target": 2}}, "spec.autoscaling.metric: Unsupported"),
        ({"autoscaling": {"minReplicas": 0, "maxReplicas": 4, "metric": "queueDepth", "target": 1}},
         "spec.autoscaling.minReplicas"),
        ({"lora": "pvc://models/alice.safetensors", "baseModel": "builtin:tiny"}, "set exactly one of"),
        ({"fineTune": None, "lora": "pvc://models/a.safetensors", "baseModel": "builtin:tiny"}, None),
        ({"fineTune": None, "lora": "pvc://Models/a.safetensors", "baseModel": "builtin:tiny"}, "pvc://claim/path"),
        ({"fineTune": None, "lora": "pvc://models/a", "baseModel": "builtin:tiny",
          "loraSha256": "0123456789abcdef" * 4}, None),
        ({"fineTune": None, "lora": "s3://my-loras/alice", "baseModel": "stabilityai/stable-diffusion-xl-base-1.0",
          "baseModelRevision": "462165984030d82259a11f4367a4eed129e94a7b"}, None),
        ({"baseModelRevision": "refs pr/1"}, "spec.baseModelRevision in body should match"),
        # A set of fine-tunes served as adapters: nvidia or cpu only, with the base model named.
        ({"fineTune": None, "fineTunes": ["alice", "bob"], "baseModel": "builtin:tiny", "accelerator": "cpu"}, None),
        ({"fineTune": None, "fineTuneSelector": {"matchLabels": {"team": "a"}}, "baseModel": "builtin:tiny",
          "accelerator": "nvidia", "adapters": {"resident": 2, "maxRank": 16}}, None),
        ({"fineTune": None, "fineTuneSelector": {}, "baseModel": "builtin:tiny", "accelerator": "cpu"}, None),
        ({"fineTune": None, "fineTunes": ["alice"], "baseModel": "builtin:tiny"},
         "spec.accelerator: Forbidden: spec.fineTunes and spec.fineTuneSelector need spec.accelerator nvidia or cpu"),
        ({"fineTune": None, "fineTuneSelector": {}, "baseModel": "builtin:tiny", "accelerator": "neuron"},
         "a LoRA is fused into the model at compile time"),
        ({"fineTune": None, "fineTunes": ["alice"], "accelerator": "cpu"}, "spec.baseModel: Required value"),
        ({"fineTunes": ["alice"], "baseModel": "builtin:tiny", "accelerator": "cpu"}, "set exactly one of"),
        ({"fineTune": None, "fineTunes": ["alice"], "fineTuneSelector": {}, "baseModel": "builtin:tiny",
          "accelerator": "cpu"}, "set exactly one of"),
        ({"adapters": {"resident": 2}}, "spec.adapters: Forbidden"),
        ({"fineTune": None, "fineTunes": ["Alice"], "baseModel": "builtin:tiny", "accelerator": "cpu"},
         "should match"),
        ({"fineTune": None, "fineTunes": [], "baseModel": "builtin:tiny", "accelerator": "cpu"},
         "should have at least 1 items"),
        ({"fineTune": None, "fineTuneSelector": {"matchExpressions": [{"key": "team", "operator": "In"}]},
          "baseModel": "builtin:tiny", "accelerator": "cpu"}, "operators In and NotIn need values"),
        ({"fineTune": None, "fineTuneSelector": {"matchExpressions": [{"key": "team", "operator": "Exists"}]},
          "baseModel": "builtin:tiny", "accelerator": "cpu"}, None),
    ],
)
def test_deployment_cross_field_rules(
    crd_validator: Validator, deployment_crd_path: Path, change: dict[str, Any], expected: str | None
) -> None:
    obj = _load(CRD_DIR / "examples" / "deployment-cpu.yaml")
    obj["spec"].pop("accelerator")
    for key, value in change.items():
        if value is None:
            obj["spec"].pop(key)
        else:
            obj["spec"][key] = value
    errors = crd_validator(obj, deployment_crd_path)
    if expected is None:
        assert errors == []
    else:
        assert len(errors) == 1 and expected in errors[0], errors


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("baseModel", "s3://my-bucket/models/sdxl", None),
        ("baseModel", "pvc://models/sdxl-base", None),
        ("baseModel", "/models/sdxl-base", None),
        ("baseModel", "builtin:tiny-mid", None),
        ("baseModel", "s3://B/models", "s3://bucket/prefix"),
        ("baseModel", "pvc://", "pvc://claim/path"),
        ("instanceImages", "builtin:tiny", "builtin:sample-subject"),
        ("vae", "builtin:tiny", "no embedded VAE"),
        ("output", "builtin:out", "writable storage"),
        ("output", "s3://my-bucket/runs/alice", None),
    ],
)
def test_finetune_uri_rules(
    crd_validator: Validator, finetune_crd_path: Path, tiny_finetune: dict[str, Any],
    field: str, value: str, expected: str | None,
) -> None:
    tiny_finetune["spec"][field] = value
    errors = crd_validator(tiny_finetune, finetune_crd_path)
    if expected is None:
        assert errors == []
    else:
        assert len(errors) == 1 and expected in errors[0] and f"spec.{field}" in errors[0], errors


def test_prior_preservation_with_class_prompt_is_accepted(
    crd_validator: Validator, finetune_crd_path: Path, tiny_finetune: dict[str, Any]
) -> None:
    tiny_finetune["spec"]["priorPreservation"] = {"enabled": True, "numClassImages": 4}
    tiny_finetune["spec"]["classPrompt"] = "a photo of a person"
    assert crd_validator(tiny_finetune, finetune_crd_path) == []
    tiny_finetune["spec"]["priorPreservation"]["enabled"] = False
    del tiny_finetune["spec"]["classPrompt"]
    assert crd_validator(tiny_finetune, finetune_crd_path) == []


# --- status -------------------------------------------------------------------------------------

CONDITION = {
    "type": "Succeeded", "status": "True", "reason": "TrainingSucceeded", "message": "trained 200 steps",
    "lastTransitionTime": "2026-11-26T12:00:00Z", "observedGeneration": 1,
}
FINETUNE_STATUS = {
    "phase": "Succeeded",
    "conditions": [CONDITION],
    "observedGeneration": 1,
    "progress": {"step": 200, "totalSteps": 200, "loss": 0.081, "etaSeconds": 0,
                 "updatedAt": "2026-11-26T12:00:00Z"},
    "artifacts": {"lora": "pvc://sdxl-artifacts/store/finetunes/default/tiny/1a2b3c4d/lora",
                  "kohyaLora": "pvc://sdxl-artifacts/store/finetunes/default/tiny/1a2b3c4d/kohya",
                  "validationImages": "pvc://sdxl-artifacts/store/finetunes/default/tiny/1a2b3c4d/validation",
                  "loraSha256": "ab" * 32},
    "trainingJob": "tiny-subject-train",
    "startTime": "2026-11-26T11:59:00Z",
    "completionTime": "2026-11-26T12:00:00Z",
}
DEPLOYMENT_STATUS = {
    "phase": "Ready",
    "conditions": [dict(CONDITION, type="Ready", reason="MinimumReplicasAvailable")],
    "observedGeneration": 2,
    "compileKey": "cd" * 32,
    "compiledArtifact": "pvc://sdxl-artifacts/store/compiled/" + "cd" * 32,
    "compileJob": "tiny-subject-cpu-compile-cdcdcdcd",
    "liveArtifact": "pvc://sdxl-artifacts/store/compiled/" + "cd" * 32,
    "replicas": 1,
    "readyReplicas": 1,
    "url": "http://tiny-subject-cpu.default.svc:8080",
}
FAILURE = {"reason": "OutOfMemory", "message": "the training pod ran out of memory", "exitCode": 137,
           "time": "2026-11-26T12:00:00Z"}


@pytest.mark.parametrize(
    ("example", "status"),
    [
        ("finetune-tiny.yaml", FINETUNE_STATUS),
        ("finetune-tiny.yaml", dict(FINETUNE_STATUS, phase="Failed", failure=FAILURE)),
        ("deployment-cpu.yaml", DEPLOYMENT_STATUS),
        ("deployment-cpu.yaml", dict(DEPLOYMENT_STATUS, phase="Failed", failure=FAILURE)),
    ],
)
def test_status_the_operator_writes_is_accepted(
    crd_validator: Validator, example: str, status: dict[str, Any]
) -> None:
    obj = _load(CRD_DIR / "examples" / example)
    obj["status"] = status
    assert crd_validator(obj, _crd_for(obj)) == []


@pytest.mark.parametrize(
    ("example", "status", "expected"),
    [
        ("finetune-tiny.yaml", {"phase": "Running"}, 'status.phase: Unsupported value: "Running"'),
        ("deployment-cpu.yaml", {"phase": "Training"}, 'status.phase: Unsupported value: "Training"'),
        ("finetune-tiny.yaml", {"conditions": [{k: v for k, v in CONDITION.items() if k != "message"}]},
         "status.conditions[0].message: Required value"),
        ("finetune-tiny.yaml", {"conditions": [dict(CONDITION, status="true")]},
         'status.conditions[0].status: Unsupported value: "true"'),
        ("finetune-tiny.yaml", {"conditions": [dict(CONDITION, reason="training failed")]},
         "status.conditions[0].reason in body should match"),
        ("finetune-tiny.yaml", {"conditions": [dict(CONDITION, lastTransitionTime="yesterday")]},
         "status.conditions[0].lastTransitionTime in body must be of type date-time"),
        ("finetune-tiny.yaml", {"failure": dict(FAILURE, reason="Oops")}, 'status.failure.reason: Unsupported value'),
        ("finetune-tiny.yaml", {"kopf": {"progress": {}}}, 'unknown field "status.kopf"'),
        ("deployment-cpu.yaml", {"compileKey": "abc"}, "status.compileKey in body should match"),
    ],
)
def test_status_outside_the_schema_is_rejected(
    crd_validator: Validator, example: str, status: dict[str, Any], expected: str
) -> None:
    obj = _load(CRD_DIR / "examples" / example)
    obj["status"] = status
    errors = crd_validator(obj, _crd_for(obj))
    assert len(errors) == 1 and expected in errors[0], errors


# --- the scale subresource: kubectl scale, an HPA or KEDA targeting an SDXLDeployment ----------------


def test_the_scale_subresource_has_a_label_selector_the_status_declares(crd_validation: ModuleType) -> None:
    crd = crd_validation.load_crd_document(CRD_DIR / "sdxldeployments.sdxl.io.yaml")
    [version] = crd["spec"]["versions"]
    scale = version["subresources"]["scale"]
    # An HPA refuses a target whose scale subresource has no selector ("selector is required").
    assert scale == {"specReplicasPath": ".spec.replicas", "statusReplicasPath": ".status.replicas",
                     "labelSelectorPath": ".status.selector"}
    selector = _node_at(_schema(crd_validation, "sdxldeployments.sdxl.io.yaml"), "status.selector")
    assert selector["type"] == "string"


@pytest.mark.parametrize(
    ("old_spec", "new_spec", "expected"),
    [
        ({"replicas": 1}, {"replicas": 3}, None),  # kubectl scale without spec.autoscaling
        ({"replicas": 1, "autoscaling": {"maxReplicas": 4}}, {"replicas": 3, "autoscaling": {"maxReplicas": 4}},
         "spec.replicas cannot change while spec.autoscaling is set"),
        ({"replicas": 1, "autoscaling": {"maxReplicas": 4}}, {"replicas": 1, "autoscaling": {"maxReplicas": 6}}, None),
        ({"replicas": 1, "autoscaling": {"maxReplicas": 4}}, {"replicas": 3}, None),  # autoscaling removed
        ({"replicas": 1}, {"replicas": 2, "autoscaling": {"maxReplicas": 4}}, None),  # autoscaling added
    ],
)
def test_scaling_by_hand_is_refused_not_ignored_while_autoscaling_is_set(
    crd_validator: Validator, deployment_crd_path: Path, old_spec: dict[str, Any], new_spec: dict[str, Any],
    expected: str | None,
) -> None:
    old = _load(CRD_DIR / "examples" / "deployment-cpu.yaml")
    old["spec"].update(old_spec)
    new = copy.deepcopy(old)
    new["spec"].pop("autoscaling", None)
    new["spec"].update(new_spec)
    errors = crd_validator(new, deployment_crd_path, old=old)
    if expected is None:
        assert errors == []
    else:
        assert len(errors) == 1 and expected in errors[0] and "spec.replicas" in errors[0], errors


def test_the_readme_troubleshooting_table_explains_every_failure_reason() -> None:
    from sdxl_contract.failure_reasons import ALL_REASONS

    readme = (CRD_DIR.parent / "README.md").read_text(encoding="utf-8")
    table = readme.split("## Troubleshooting", 1)[1].split("\n## ", 1)[0]
    rows = set(re.findall(r"^\| `([A-Za-z]+)` \|", table, re.MULTILINE))
    assert set(ALL_REASONS) <= rows, f"README.md Troubleshooting lacks {sorted(set(ALL_REASONS) - rows)}"
