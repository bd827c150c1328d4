"""`--spec FILE`: manifests, bare specs and resolved specs in YAML or JSON, and bad files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sdxl_workloads.protocol import WorkloadError
from sdxl_workloads.spec.finetune_spec import load_finetune_spec
from sdxl_workloads.spec.spec_loading import load_manifest, read_manifest

# These modules also run in the Neuron image (compile: storage, spec files, builtin:tiny), so
# `make test-compat` runs these tests against its older library versions too.
pytestmark = pytest.mark.compat

MANIFEST_YAML = """\
apiVersion: sdxl.io/v1alpha1
kind: SDXLFineTune
metadata:
  name: alice
  namespace: team
spec:
  baseModel: builtin:tiny
  instanceImages: builtin:sample-subject
  instancePrompt: a photo of sks person
  training:
    learningRate: 1e-4
    textEncoderLearningRate: 5e-6
    maxSteps: 20
status:
  phase: Training
"""

BARE_YAML = """\
instanceImages: pvc://photos/alice
instancePrompt: "a photo of sks person"
training: {rank: 8, learningRate: 2E-5}
"""

RESOLVED_JSON = json.dumps({
    "instanceImages": "s3://bucket/alice", "instancePrompt": "a photo of sks person",
    "training": {"maxSteps": 30}, "metadata": {"name": "alice", "namespace": "team", "uid": "1234-5678"},
})


@pytest.mark.parametrize(("name", "text", "kind", "metadata", "expected"), [
    ("ft.yaml", MANIFEST_YAML, "SDXLFineTune", {"name": "alice", "namespace": "team"},
     {"baseModel": "builtin:tiny", "instanceImages": "builtin:sample-subject",
      "instancePrompt": "a photo of sks person",
      "training": {"learningRate": 1e-4, "textEncoderLearningRate": 5e-6, "maxSteps": 20}}),
    ("spec.yaml", BARE_YAML, None, {},
     {"instanceImages": "pvc://photos/alice", "instancePrompt": "a photo of sks person",
      "training": {"rank": 8, "learningRate": 2e-5}}),
    ("spec.json", RESOLVED_JSON, None, {"name": "alice", "namespace": "team", "uid": "1234-5678"},
     {"instanceImages": "s3://bucket/alice", "instancePrompt": "a photo of sks person",
      "training": {"maxSteps": 30}}),
])
def test_the_three_shapes(tmp_path: Path, name: str, text: str, kind: str | None,
                          metadata: dict[str, str], expected: dict[str, object]) -> None:
    path = tmp_path / name
    path.write_text(text)
    manifest = read_manifest(path, expected_kind="SDXLFineTune")
    assert manifest.spec == expected
    assert manifest.kind == kind
    assert manifest.metadata == metadata
    assert load_manifest(path) == expected
    load_finetune_spec(manifest.spec)  # and each is a valid fine-tune spec


def test_exponent_floats_are_numbers_as_kubectl_reads_them(tmp_path: Path) -> None:
    path = tmp_path / "spec.yaml"
    path.write_text("a: 1e-4\nb: 5E+3\nc: -2.5e-6\nd: 10\ne: '1e-4'\nf: 1.5\ng: .5\nh: 1_000\n")
    assert load_manifest(path) == {"a": 1e-4, "b": 5e3, "c": -2.5e-6, "d": 10, "e": "1e-4", "f": 1.5,
                                   "g": 0.5, "h": 1000}


EXAMPLES = Path(__file__).parents[3] / "crds" / "examples"
# Invalid examples whose fault lies outside `spec` (the API server checks object names).
NOT_A_SPEC_FAULT = {"uppercase-name.yaml"}


def _fine_tune_examples(folder: Path) -> list[Path]:
    return sorted(p for p in folder.glob("*.yaml") if "kind: SDXLFineTune" in p.read_text())


@pytest.mark.parametrize("example", _fine_tune_examples(EXAMPLES), ids=lambda p: p.name)
def test_the_example_manifests_load(example: Path) -> None:
    spec = load_finetune_spec(load_manifest(example, expected_kind="SDXLFineTune"))
    assert spec.instance_prompt


@pytest.mark.parametrize("example", [p for p in _fine_tune_examples(EXAMPLES / "invalid")
                                     if p.name not in NOT_A_SPEC_FAULT], ids=lambda p: p.name)
def test_the_invalid_example_manifests_are_refused(example: Path) -> None:
    with pytest.raises(WorkloadError) as err:
        load_finetune_spec(load_manifest(example, expected_kind="SDXLFineTune"))
    assert err.value.reason == "InvalidInput"
    assert err.value.message.startswith("spec.")


@pytest.mark.parametrize(("name", "content", "message"), [
    ("missing.yaml", None, "spec file {path} not found"),
    ("empty.yaml", "", "spec file {path} is empty"),
    ("comments.yaml", "# nothing\n", "spec file {path} is empty"),
    ("broken.yaml", "spec:\n  a: [1, 2\n", "spec file {path}: not valid YAML or JSON at line 3, column 1"),
    ("broken.json", '{"spec": {"a": 1}', "spec file {path}: not valid YAML or JSON at line 1"),
    ("list.yaml", "- a\n- b\n", "spec file {path}: expected a mapping at the top level, got list"),
    ("scalar.yaml", "hello\n", "spec file {path}: expected a mapping at the top level, got str"),
    ("two.yaml", "a: 1\n---\nb: 2\n", "spec file {path} holds 2 YAML documents"),
    ("nospec.yaml", "apiVersion: sdxl.io/v1alpha1\nkind: SDXLFineTune\nmetadata: {name: a}\n",
     "spec file {path}: the manifest has no `spec` mapping"),
    ("wrongkind.yaml", "apiVersion: sdxl.io/v1alpha1\nkind: SDXLDeployment\nspec: {lora: x}\n",
     "spec file {path} is an SDXLDeployment manifest; this command needs an SDXLFineTune"),
    ("badmeta.json", '{"instancePrompt": "x", "metadata": [1]}', "spec file {path}: metadata must be a mapping"),
    ("binary.yaml", b"\xff\xfe\x00", "spec file {path}: cannot read it"),
])
def test_bad_files_are_named(tmp_path: Path, name: str, content: str | bytes | None, message: str) -> None:
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content)
    with pytest.raises(WorkloadError) as err:
        read_manifest(path, expected_kind="SDXLFineTune")
    assert err.value.reason == "InvalidInput"
    assert err.value.message.startswith(message.format(path=path)), err.value.message
