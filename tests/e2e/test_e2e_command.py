"""``sdxl-operator sandbox`` as a user runs it (``make demo`` runs it with the default examples).

Each test runs the real command in its own process on small manifests and checks what a user sees:
the exit status, the tables and messages, the saved images, and that nothing it started is left
running afterwards (no process mentions its work dir, in its command line or its environment).
"""

from __future__ import annotations

import io
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from PIL import Image

from sdxl_sandbox.contact_sheet import sheet_size
from sdxl_sandbox.subject_comparison import world_model_is_pretrained

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

SANDBOX = [str(Path(sys.executable).parent / "sdxl-operator"), "sandbox"]


def processes_mentioning(text: str) -> list[int]:
    """Pids of the processes whose command line or environment contains ``text``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            blob = (entry / "cmdline").read_bytes() + (entry / "environ").read_bytes()
        except OSError:
            continue
        if text.encode() in blob:
            found.append(int(entry.name))
    return found


def write_manifests(folder: Path, *objects: dict[str, Any]) -> Path:
    path = folder / "manifests.yaml"
    path.write_text(yaml.safe_dump_all(objects), encoding="utf-8")
    return path


def run_sandbox(args: list[str], workdir: Path, timeout: float) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([*SANDBOX, *args, "--workdir", str(workdir)], capture_output=True, text=True,
                            timeout=timeout, check=False)
    assert not processes_mentioning(str(workdir)), "the sandbox left processes running"
    return result


def test_command_trains_serves_and_saves_images(tmp_path: Path, make_finetune: Any, make_deployment: Any) -> None:
    manifests = write_manifests(tmp_path, make_finetune("cmd-subject", "default"),
                                make_deployment("cmd-cpu", "cmd-subject", "default"))
    output = tmp_path / "images"
    result = run_sandbox([str(manifests), "--output", str(output), "--timeout", "600"], tmp_path / "work", 700)

    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert any(line.split() == ["NAME", "PHASE", "STEP", "LOSS", "READY", "URL"] for line in lines)
    assert any(line.startswith("sdxlfinetune/cmd-subject") and "Succeeded" in line and "6/6" in line
               for line in lines)
    assert any(line.startswith("sdxldeployment/cmd-cpu") and "Ready" in line and "1/1" in line
               and "http://cmd-cpu.default.svc:8080" in line for line in lines)
    saved = sorted(output.glob("*.png"))
    assert [path.name for path in saved] == ["cmd-cpu-1.png", "cmd-cpu-2.png"]
    for path in saved:
        assert f"saved {path}" in result.stdout
        assert Image.open(path).size == (64, 64)


def test_command_on_the_real_control_plane(tmp_path: Path) -> None:
    # What `make demo-real` runs: the default examples, on kube-apiserver, the controller manager, the
    # scheduler and etcd, with the chart installed and the operator running as its ServiceAccount.
    output = tmp_path / "images"
    workdir = tmp_path / "work"
    result = run_sandbox(["--control-plane", "real", "--output", str(output), "--timeout", "600"], workdir, 700)

    assert result.returncode == 0, result.stdout + result.stderr
    assert f"kubectl --kubeconfig {workdir.resolve() / 'kubeconfig'}" in result.stdout
    assert any(line.startswith("sdxldeployment/world-cpu") and "Ready" in line
               and "http://world-cpu.default.svc:8080" in line for line in result.stdout.splitlines())
    assert sorted(path.name for path in output.glob("*.png")) == ["contact-sheet.png", "world-cpu-1.png",
                                                                  "world-cpu-2.png"]
    # The operator ran as the chart's ServiceAccount (a token kubeconfig), not as the admin.
    operator_config = json.loads((workdir / "operator.kubeconfig").read_text())
    assert "token" in operator_config["users"][0]["user"]
    assert "client-certificate-data" not in operator_config["users"][0]["user"]


def test_the_demo_shows_what_the_fine_tune_learned(tmp_path: Path) -> None:
    # What `make demo` runs: the default examples fine-tune builtin:world on builtin:world-subject and
    # serve it as an adapter; the command draws the demo's prompts with and without it.
    output = tmp_path / "images"
    result = run_sandbox(["--output", str(output), "--timeout", "600"], tmp_path / "work", 700)

    assert result.returncode == 0, result.stdout + result.stderr
    sheet = output / "contact-sheet.png"
    assert f"saved {sheet}" in result.stdout
    # Rows: the four settings and the class prompt; columns: the base model and the fine-tune.
    assert Image.open(sheet).size == sheet_size(5, 2)
    numbers = {}
    for name in ("identity", "prompt fidelity", "class drift"):
        found = re.search(rf"^\s+{name}\s+([-+]?\d\.\d\d)", result.stdout, re.MULTILINE)
        assert found, result.stdout
        numbers[name] = float(found.group(1))
    base_identity = re.search(r"^\s+identity\s+\S+\s+\(base model: (\d\.\d\d)\)", result.stdout, re.MULTILINE)
    assert base_identity, result.stdout
    # What the sheet shows depends on the weights: a short build of builtin:world has learned nothing
    # to show (the report says so); the pretrained one learns the subject in the demo's steps.
    if world_model_is_pretrained():
        assert numbers["identity"] > float(base_identity.group(1)), result.stdout
    else:
        assert "builtin:world here is a short build" in result.stdout


def test_command_reports_a_failed_resource_and_exits_1(tmp_path: Path, make_finetune: Any) -> None:
    workdir = tmp_path / "work"
    photos = workdir / "pvcs" / "photos" / "blank"  # the claim `photos`, as the sandbox keeps claims
    photos.mkdir(parents=True)
    for index in range(3):
        png = io.BytesIO()
        Image.new("RGB", (8, 8)).save(png, format="PNG")
        (photos / f"{index}.png").write_bytes(png.getvalue())
    claim = {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "photos"},
             "spec": {"accessModes": ["ReadWriteMany"], "resources": {"requests": {"storage": "1Gi"}}}}
    manifests = write_manifests(tmp_path, claim, make_finetune("cmd-bad", "default", instanceImages="pvc://photos/blank"))
    result = run_sandbox([str(manifests), "--output", str(tmp_path / "images"), "--timeout", "300"], workdir, 400)

    assert result.returncode == 1, result.stdout + result.stderr
    assert "FAILED: SDXLFineTune cmd-bad: InvalidInput: instance images in" in result.stdout
    assert "0.png is 8x8 px, too small" in result.stdout
    assert not (tmp_path / "images").exists()


def test_command_rejects_a_missing_file(tmp_path: Path) -> None:
    result = run_sandbox([str(tmp_path / "nope.yaml")], tmp_path / "work", 60)
    assert result.returncode == 2
    assert "nope.yaml" in result.stderr and "cannot read it" in result.stderr


def test_ctrl_c_stops_everything(tmp_path: Path, make_finetune: Any) -> None:
    manifests = write_manifests(tmp_path, make_finetune("cmd-long", "default", training={"maxSteps": 5000}))
    workdir = tmp_path / "work"
    log = tmp_path / "out.txt"
    with log.open("w") as out:
        # Ctrl-C as a terminal delivers it: a test run started in the background by a shell inherits
        # SIGINT ignored, and a Python started so never installs its KeyboardInterrupt handler.
        process = subprocess.Popen([*SANDBOX, str(manifests), "--workdir", str(workdir)], stdout=out,
                                   stderr=subprocess.STDOUT, text=True,
                                   preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.monotonic() + 180
        while "cmd-long: step" not in log.read_text():  # training is under way
            assert process.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.5)
        assert processes_mentioning(str(workdir))  # the trainer, at least
        process.send_signal(signal.SIGINT)
        try:
            code = process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the sandbox was still running 60 s after Ctrl-C; still alive: "
                        f"{processes_mentioning(str(workdir))}; its output ends:\n{log.read_text()[-4000:]}")
        assert code == 130, log.read_text()[-4000:]
    finally:
        if process.poll() is None:
            process.kill()
    assert "stopped; every process the sandbox started has been stopped" in log.read_text()
    assert not processes_mentioning(str(workdir))


def test_command_says_what_is_pending_when_time_runs_out(tmp_path: Path, make_finetune: Any,
                                                         make_deployment: Any) -> None:
    manifests = write_manifests(tmp_path, make_deployment("cmd-waiting", "cmd-absent", "default"))
    result = run_sandbox([str(manifests), "--timeout", "15"], tmp_path / "work", 120)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "TIMED OUT after 15s; still pending: SDXLDeployment cmd-waiting (Pending)" in result.stdout
    assert "cmd-waiting: FineTuneNotFound:" in result.stdout  # why it waits
