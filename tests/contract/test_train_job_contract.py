"""The operator's training Job and spec ConfigMap speak the trainer's language.

The operator never imports the workloads; this test holds the two sides together: the Job's command
and args parse with the trainer's own argument parser, the ConfigMap's spec.json loads with the
trainer's own spec loader and means the same spec, and the paths and environment the Job sets are
the ones the trainer reads.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from sdxl_contract.exit_codes import exit_code_for
from sdxl_contract.workload_protocol import SPEC_PATH
from sdxl_operator.core.settings import OperatorSettings
from sdxl_operator.manifests.spec_configmap import build_spec_configmap
from sdxl_operator.manifests.training_job import build_training_job
from sdxl_operator.spec.resolved_spec import resolve_finetune_spec, resolved_finetune_spec
from sdxl_workloads import cli, protocol
from sdxl_workloads.spec import spec_loading
from sdxl_workloads.spec.finetune_spec import load_finetune_spec
from sdxl_workloads.storage.pvc import pvc_root

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((REPO / "crds" / "examples").glob("finetune*.yaml"))


def _without_none(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _without_none(item) for key, item in value.items() if item is not None}
    return value


def _owner(example: Path) -> dict[str, Any]:
    owner = yaml.safe_load(example.read_text())
    owner["metadata"].setdefault("namespace", "default")
    owner["metadata"]["uid"] = "6c1f0a52-9b7e-4d1c-8f1e-2a3b4c5d6e7f"
    return owner  # type: ignore[no-any-return]


def _children(owner: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    meta = owner["metadata"]
    spec = resolved_finetune_spec(owner["spec"], name=meta["name"], namespace=meta["namespace"], uid=meta["uid"],
                                  artifact_store="pvc://sdxl-artifacts/store")
    resolved = resolve_finetune_spec(spec, name=meta["name"], namespace=meta["namespace"], uid=meta["uid"],
                                     artifact_store="pvc://sdxl-artifacts/store")
    settings = OperatorSettings(hf_token_secret="hf")
    return resolved, build_spec_configmap(owner, resolved), build_training_job(owner, spec, settings)


@pytest.mark.parametrize("example", EXAMPLES, ids=[e.stem for e in EXAMPLES])
def test_job_command_parses_with_the_trainer_cli(example: Path) -> None:
    _, _, job = _children(_owner(example))
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] == ["sdxl-workload"]
    assert 'sdxl-workload = "sdxl_workloads.cli:main"' in (REPO / "pyproject.toml").read_text()
    args = cli.parse_args(container["args"])
    assert args.command == "train"
    assert args.spec == SPEC_PATH
    assert args.resume == "latest"  # a replaced pod continues from its newest checkpoint
    assert cli.COMMANDS[args.command] == "sdxl_workloads.train.train_command"


@pytest.mark.parametrize("example", EXAMPLES, ids=[e.stem for e in EXAMPLES])
def test_configmap_spec_loads_with_the_trainer_spec_loader(example: Path, tmp_path: Path) -> None:
    owner = _owner(example)
    resolved, configmap, job = _children(owner)
    # Mount the ConfigMap as the kubelet would: its key becomes a file under the mount path.
    volume = job["spec"]["template"]["spec"]["volumes"][0]
    mount = job["spec"]["template"]["spec"]["containers"][0]["volumeMounts"][0]
    assert volume["configMap"]["name"] == configmap["metadata"]["name"]
    item = volume["configMap"]["items"][0]
    assert f"{mount['mountPath']}/{item['path']}" == SPEC_PATH
    spec_file = tmp_path / item["path"]
    spec_file.write_text(configmap["data"][item["key"]])

    manifest = spec_loading.read_manifest(spec_file)
    assert manifest.metadata == resolved["metadata"]
    spec = load_finetune_spec(spec_loading.load_manifest(spec_file))
    expected = {key: value for key, value in resolved.items() if key != "metadata"}
    # The trainer reads exactly what the operator resolved (it lists unset optional fields as None)...
    assert _without_none(spec.to_dict()) == expected
    # ...and resolving changed nothing but the output location: both sides have the same defaults.
    user_spec = load_finetune_spec(copy.deepcopy(owner["spec"]))
    assert {k: v for k, v in _without_none(user_spec.to_dict()).items() if k != "output"} == \
        {k: v for k, v in expected.items() if k != "output"}


def test_job_environment_and_paths_match_the_trainer(monkeypatch: pytest.MonkeyPatch) -> None:
    """Under the Job's environment the trainer writes its result where the kubelet reads it and finds
    the artifact store's claim where the Job mounts it."""
    owner = _owner(REPO / "crds" / "examples" / "finetune.yaml")
    owner["spec"]["output"] = "pvc://loras/alice"
    _, _, job = _children(owner)
    container = job["spec"]["template"]["spec"]["containers"][0]
    env = {item["name"]: item.get("value") for item in container["env"]}
    for name, value in env.items():
        if name.startswith("SDXL_") and value is not None:
            monkeypatch.setenv(name, value)
    assert str(protocol.termination_log_path()) == container["terminationMessagePath"]
    # The trainer looks for the output's claim where the Job mounts it.
    assert str(pvc_root() / "loras") in {mount["mountPath"] for mount in container["volumeMounts"]}
    assert "HF_TOKEN" in env


def test_the_job_fails_at_once_on_the_trainers_permanent_exit_code() -> None:
    # The Job fails at once on the exit code the CLI uses for permanent failures (bad input) and
    # retries the rest (a storage hiccup or a lost node), resuming from the last checkpoint.
    _, _, job = _children(_owner(REPO / "crds" / "examples" / "finetune.yaml"))
    fail_job = [rule for rule in job["spec"]["podFailurePolicy"]["rules"] if rule["action"] == "FailJob"]
    assert len(fail_job) == 1 and fail_job[0]["onExitCodes"]["containerName"] == "trainer"
    permanent = fail_job[0]["onExitCodes"]["values"]
    assert exit_code_for("InvalidInput") in permanent
    for reason in ("StorageError", "InternalError"):
        assert exit_code_for(reason) not in permanent, reason


def test_a_result_the_trainer_writes_is_read_back_by_the_operator(tmp_path: Path) -> None:
    from sdxl_operator.status.workload_output import parse_result

    log = tmp_path / "termination-log"
    protocol.report_failure("InvalidInput", "instanceImages: no images found", str(log))
    result = parse_result(log.read_text())
    assert result is not None and result["reason"] == "InvalidInput"
    assert json.loads(log.read_text())["status"] == "Failed"
