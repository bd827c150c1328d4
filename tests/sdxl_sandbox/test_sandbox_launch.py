"""How the sandbox turns a container into a local command line: paths, environment, ports; and its tables."""

from __future__ import annotations

import base64
import sys
from pathlib import Path
from typing import Any

import pytest

from sdxl_sandbox.container_launch import LOOPBACK, plan_launch
from sdxl_sandbox.path_mapping import PodFilesystem, VolumeNotReady, prepare_volumes
from sdxl_sandbox.tables import deployment_row, finetune_row, progress_line, render_table

POD = {"metadata": {"name": "p-1", "namespace": "ns", "uid": "u-1", "labels": {"app": "x"}}, "spec": {}}


def test_rewrite_replaces_whole_mount_paths_only() -> None:
    fs = PodFilesystem({"/tmp": Path("/w/tmp"), "/mnt/pvc/a": Path("/w/pvcs/a"), "/mnt/pvc/a-b": Path("/w/pvcs/a-b")})
    assert fs.rewrite("/tmp") == "/w/tmp"
    assert fs.rewrite("/tmp/x/y.json") == "/w/tmp/x/y.json"
    assert fs.rewrite("/tmpfoo /x/tmp ./tmp") == "/tmpfoo /x/tmp ./tmp"
    assert fs.rewrite("pvc at /mnt/pvc/a-b/c and /mnt/pvc/a/d") == "pvc at /w/pvcs/a-b/c and /w/pvcs/a/d"
    assert fs.rewrite("--out=/mnt/pvc/a") == "--out=/w/pvcs/a"
    assert fs.local_path("/mnt/pvc/a/d") == "/w/pvcs/a/d"
    assert fs.local_path("/etc/other") == "/etc/other"


def test_volumes_become_folders(tmp_path: Path) -> None:
    spec = {"volumes": [
        {"name": "spec", "configMap": {"name": "cm", "items": [{"key": "spec.json", "path": "s.json"}]}},
        {"name": "key", "secret": {"secretName": "sec"}},
        {"name": "claim", "persistentVolumeClaim": {"claimName": "store", "readOnly": True}},
        {"name": "scratch", "emptyDir": {"medium": "Memory"}},
    ]}
    container = {"volumeMounts": [{"name": "spec", "mountPath": "/etc/sdxl"}, {"name": "key", "mountPath": "/etc/k"},
                                  {"name": "claim", "mountPath": "/mnt/pvc/store"},
                                  {"name": "scratch", "mountPath": "/dev/shm"}]}
    fs = prepare_volumes(spec, container, pod_dir=tmp_path / "pod", pvc_root=tmp_path / "pvcs",
                         configmaps={"cm": {"data": {"spec.json": "{}", "other": "x"}}},
                         secrets={"sec": {"data": {"api-key": "c2VjcmV0"}}})
    assert Path(fs.local_path("/etc/sdxl/s.json")).read_text() == "{}"
    assert not Path(fs.local_path("/etc/sdxl/other")).exists()  # only the items asked for
    assert Path(fs.local_path("/etc/k/api-key")).read_text() == "secret"
    assert fs.local_path("/mnt/pvc/store/x") == str(tmp_path / "pvcs" / "store" / "x")
    assert Path(fs.local_path("/dev/shm")).is_dir()


def test_a_missing_configmap_makes_the_pod_wait_and_an_unknown_volume_type_is_refused(tmp_path: Path) -> None:
    container = {"volumeMounts": [{"name": "v", "mountPath": "/etc/v"}]}
    with pytest.raises(VolumeNotReady, match="ConfigMap 'cm'"):
        prepare_volumes({"volumes": [{"name": "v", "configMap": {"name": "cm"}}]}, container, pod_dir=tmp_path,
                        pvc_root=tmp_path, configmaps={}, secrets={})
    with pytest.raises(ValueError, match=r"hostPath.*not emulated"):
        prepare_volumes({"volumes": [{"name": "v", "hostPath": {"path": "/"}}]}, container, pod_dir=tmp_path,
                        pvc_root=tmp_path, configmaps={}, secrets={})


def test_launch_plan(tmp_path: Path) -> None:
    container = {
        "name": "server", "command": ["sdxl-workload"],
        "args": ["serve", "--model", "/mnt/pvc/store/m", "--port", "8080"],
        "ports": [{"name": "http", "containerPort": 8080}],
        "env": [{"name": "HOME", "value": "/tmp"}, {"name": "SDXL_PVC_ROOT", "value": "/mnt/pvc"},
                {"name": "NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
                {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "absent", "key": "t", "optional": True}}},
                {"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "cm", "key": "mode"}}}],
    }
    fs = PodFilesystem({"/tmp": tmp_path / "tmp", "/mnt/pvc/store": tmp_path / "pvcs" / "store"})
    plan = plan_launch(POD, container, fs, pod_dir=tmp_path, pvc_root=tmp_path / "pvcs",
                       configmaps={"cm": {"data": {"mode": "fast"}}}, secrets={}, threads=2)
    assert plan.argv[0] == str(Path(sys.executable).parent / "sdxl-workload")
    port = plan.ports["8080"]
    assert plan.ports["http"] == port and port != 8080
    assert plan.argv[1:] == ["serve", "--model", str(tmp_path / "pvcs" / "store" / "m"), "--port", str(port),
                             "--host", LOOPBACK]
    env = plan.env
    assert (env["HOME"], env["TMPDIR"]) == (str(tmp_path / "tmp"), str(tmp_path / "tmp"))
    assert env["SDXL_PVC_ROOT"] == str(tmp_path / "pvcs")
    assert (env["NAME"], env["APP"], env["MODE"]) == ("p-1", "x", "fast")
    assert "TOKEN" not in env
    assert env["OMP_NUM_THREADS"] == "2"
    assert env["SDXL_TERMINATION_LOG"] == str(plan.termination_log)
    assert env["PATH"].split(":")[0] == str(Path(sys.executable).parent)


def test_the_termination_message_path_is_a_local_file(tmp_path: Path) -> None:
    fs = PodFilesystem({})
    plan = plan_launch(POD, {"name": "c", "command": ["python3"], "args": ["--termination-log", "/dev/termination-log"],
                             "terminationMessagePath": "/dev/termination-log"},
                       fs, pod_dir=tmp_path, pvc_root=tmp_path, configmaps={}, secrets={}, threads=1)
    assert plan.argv[1:] == ["--termination-log", str(plan.termination_log)]


def test_launch_plan_refuses_what_it_cannot_run(tmp_path: Path) -> None:
    fs = PodFilesystem({})
    with pytest.raises(ValueError, match="no command"):
        plan_launch(POD, {"name": "c", "image": "x"}, fs, pod_dir=tmp_path, pvc_root=tmp_path, configmaps={},
                    secrets={}, threads=1)
    with pytest.raises(FileNotFoundError, match="no-such-program"):
        plan_launch(POD, {"name": "c", "command": ["no-such-program"]}, fs, pod_dir=tmp_path, pvc_root=tmp_path,
                    configmaps={}, secrets={}, threads=1)
    with pytest.raises(VolumeNotReady, match="Secret 'absent'"):
        plan_launch(POD, {"name": "c", "command": ["python3"], "env": [
            {"name": "T", "valueFrom": {"secretKeyRef": {"name": "absent", "key": "t"}}}]},
            fs, pod_dir=tmp_path, pvc_root=tmp_path, configmaps={}, secrets={}, threads=1)


def test_tables_and_progress() -> None:
    finetune = {"metadata": {"name": "ft"}, "status": {
        "phase": "Training", "progress": {"step": 120, "totalSteps": 200, "loss": 0.11304, "etaSeconds": 31}}}
    deployment = {"metadata": {"name": "dep"}, "spec": {"replicas": 2},
                  "status": {"phase": "Ready", "readyReplicas": 2, "url": "http://dep.default.svc:8080"}}
    assert render_table([finetune_row(finetune), deployment_row(deployment)]).splitlines() == [
        "NAME                 PHASE      STEP      LOSS     READY   URL",
        "sdxlfinetune/ft      Training   120/200   0.1130   -       -",
        "sdxldeployment/dep   Ready      -         -        2/2     http://dep.default.svc:8080",
    ]
    assert progress_line(finetune) == "ft: step 120/200  loss 0.1130  eta 31s"
    assert progress_line({"metadata": {"name": "ft"}, "status": {"phase": "Succeeded"}}) is None


def test_pod_state_lines() -> None:
    from sdxl_sandbox.command import pod_state

    def pod(phase: str, state: dict[str, Any], ready: bool = False) -> dict[str, Any]:
        return {"status": {"phase": phase, "containerStatuses": [{"ready": ready, "state": state}]}}

    assert pod_state(pod("Pending", {"waiting": {"reason": "ContainerCreating"}})) == "Pending (ContainerCreating)"
    assert pod_state(pod("Running", {"running": {}})) == "Running"
    assert pod_state(pod("Running", {"running": {}}, ready=True)) == "Running, ready"
    assert pod_state(pod("Failed", {"terminated": {"exitCode": 2}})) == "Failed (exit 2)"
    assert pod_state(pod("Succeeded", {"terminated": {"exitCode": 0}})) == "Succeeded"


@pytest.mark.parametrize(("kind", "source_key"), [("configMap", "name"), ("secret", "secretName")])
def test_a_missing_configmap_or_secret_volume_waits_unless_optional(tmp_path: Path, kind: str, source_key: str) -> None:
    container = {"name": "c", "volumeMounts": [{"name": "v", "mountPath": "/etc/v"}]}

    def pod(optional: bool) -> dict[str, Any]:
        return {"volumes": [{"name": "v", kind: {source_key: "absent", "optional": optional}}]}

    with pytest.raises(VolumeNotReady, match=r"'absent'.*volume 'v'.*not found"):
        prepare_volumes(pod(False), container, pod_dir=tmp_path / "a", pvc_root=tmp_path / "pvc",
                        configmaps={}, secrets={})
    filesystem = prepare_volumes(pod(True), container, pod_dir=tmp_path / "b", pvc_root=tmp_path / "pvc",
                                 configmaps={}, secrets={})
    folder = Path(filesystem.local_path("/etc/v"))
    assert folder.is_dir() and not any(folder.iterdir())


def test_secret_volume_files_are_decoded(tmp_path: Path) -> None:
    container = {"name": "c", "volumeMounts": [{"name": "key", "mountPath": "/etc/sdxl/auth"}]}
    pod = {"volumes": [{"name": "key", "secret": {"secretName": "api", "items": [{"key": "api-key", "path": "k"}]}}]}
    secrets = {"api": {"data": {"api-key": base64.b64encode(b"s3cret").decode()}}}
    filesystem = prepare_volumes(pod, container, pod_dir=tmp_path, pvc_root=tmp_path / "pvc",
                                 configmaps={}, secrets=secrets)
    assert Path(filesystem.local_path("/etc/sdxl/auth/k")).read_bytes() == b"s3cret"
