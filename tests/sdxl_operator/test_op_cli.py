"""The ``sdxl-operator`` console script: option parsing, settings errors, sandbox dispatch, and a real run."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from sdxl_operator import cli
from sdxl_sandbox.kube_emulator import serve_emulator, write_kubeconfig


def test_run_takes_kopf_options() -> None:
    args = cli.build_parser().parse_args(
        ["run", "-n", "team-a", "--namespace", "team-*", "--standalone", "--liveness", "http://0.0.0.0:8080/healthz",
         "--priority", "100", "--peering", "sdxl", "-v", "--log-format", "json"])
    assert args.namespaces == ["team-a", "team-*"] and not args.all_namespaces
    assert args.standalone and args.liveness_endpoint == "http://0.0.0.0:8080/healthz"
    assert (args.priority, args.peering_name, args.verbose, args.log_format) == (100, "sdxl", True, "json")
    assert cli.build_parser().parse_args(["run", "-A"]).all_namespaces
    assert cli.build_parser().parse_args(["run", "--metrics-port", "9090"]).metrics_port == 9090
    assert cli.build_parser().parse_args(["run"]).resync_interval == 1800
    assert cli.build_parser().parse_args(["run", "--resync-interval", "0"]).resync_interval == 0


@pytest.mark.parametrize(
    ("argv", "priority_taken"),
    [
        (["run", "--peering", "sdxl"], True),  # a replica in peering: its start time
        (["run", "--peering", "sdxl", "--priority", "7"], False),
        (["run", "--standalone"], False),
    ],
)
def test_a_peering_replica_without_priority_takes_its_start_time(
    monkeypatch: pytest.MonkeyPatch, argv: list[str], priority_taken: bool,
) -> None:
    import kopf

    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(kopf, "run", lambda **kwargs: calls.append(kwargs))
    monkeypatch.setattr(kopf, "configure", lambda **_: None)
    before = time.time()
    assert cli.main(argv) == 0
    [call] = calls
    if priority_taken:
        # The priority is whole milliseconds times 1000 plus a tie-breaker below 1000, so it lies
        # between the millisecond the call started in and the one after it returned.
        after = time.time()
        assert int(before * 1000) * 1000 <= call["priority"] < (int(after * 1000) + 1) * 1000
    else:
        assert call["priority"] == (7 if "--priority" in argv else None)
    assert call["peering_name"] == ("sdxl" if "--peering" in argv else None)


def test_namespace_and_all_namespaces_exclude_each_other() -> None:
    with pytest.raises(SystemExit):
        cli.build_parser().parse_args(["run", "-n", "a", "-A"])


def test_bad_settings_stop_before_kopf_starts(monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
    monkeypatch.setenv("SDXL_TRAIN_TOLERATIONS", "{not json")
    assert cli.main(["run", "-A"]) == 2
    err = capsys.readouterr().err
    assert "SDXL_TRAIN_TOLERATIONS: not valid JSON" in err and "the operator's environment" in err


def test_sandbox_is_dispatched_lazily_with_its_arguments(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "fake_sandbox_command.py").write_text(
        "seen = []\ndef main(argv):\n    seen.append(argv)\n    return 7\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(cli, "SANDBOX_MODULE", "fake_sandbox_command")
    assert cli.main(["sandbox", "--keep", "-x"]) == 7
    assert sys.modules["fake_sandbox_command"].seen == [["--keep", "-x"]]


def test_missing_sandbox_says_what_to_install(monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
    monkeypatch.setattr(cli, "SANDBOX_MODULE", "sdxl_sandbox.no_such_module")
    assert cli.main(["sandbox"]) == 2
    err = capsys.readouterr().err
    assert "development tool" in err and "pip install 'sdxl-operator[dev]' from a checkout" in err


@pytest.mark.slow
@pytest.mark.asyncio
async def test_console_script_runs_the_operator_against_a_cluster(tmp_path: Path) -> None:
    script = Path(sys.executable).parent / "sdxl-operator"
    command = [str(script)] if script.exists() else [sys.executable, "-m", "sdxl_operator.cli"]
    async with serve_emulator() as (emulator, url):
        kubeconfig = tmp_path / "kubeconfig"
        write_kubeconfig(str(kubeconfig), url)
        env = {**os.environ, "KUBECONFIG": str(kubeconfig), "SDXL_STATUS_INTERVAL_SECONDS": "0.5"}
        env.pop("KUBERNETES_SERVICE_HOST", None)
        log = (tmp_path / "operator.log").open("wb")
        metrics_port = _free_port()
        process = subprocess.Popen([*command, "run", "--standalone", "--all-namespaces",
                                    f"--metrics-port={metrics_port}"], env=env,
                                   stdout=log, stderr=subprocess.STDOUT)
        try:
            body = {"apiVersion": "sdxl.io/v1alpha1", "kind": "SDXLFineTune", "metadata": {"name": "cli"},
                    "spec": {"baseModel": "builtin:tiny", "instanceImages": "builtin:sample-subject",
                             "instancePrompt": "a photo of sks person", "resources": {"gpus": 0}}}
            # The default artifact store is the claim pvc://sdxl-artifacts: the namespace has it, as it must.
            claim = {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "sdxl-artifacts"},
                     "spec": {"accessModes": ["ReadWriteMany"], "resources": {"requests": {"storage": "1Gi"}}}}
            async with await emulator.post("/api/v1/namespaces/default/persistentvolumeclaims", json=claim):
                pass
            async with await emulator.post("/apis/sdxl.io/v1alpha1/namespaces/default/sdxlfinetunes", json=body):
                pass
            deadline = time.monotonic() + 30
            while emulator.live_object("batch/v1/jobs", "default", "cli-train") is None:
                assert process.poll() is None, (tmp_path / "operator.log").read_text()
                assert time.monotonic() < deadline, (tmp_path / "operator.log").read_text()
                await asyncio.sleep(0.1)
            while not (emulator.live_object("sdxl.io/v1alpha1/sdxlfinetunes", "default", "cli") or {}).get("status"):
                assert time.monotonic() < deadline, (tmp_path / "operator.log").read_text()
                await asyncio.sleep(0.1)
            # The operator's own metrics count what it just did.
            metrics = await asyncio.to_thread(_scrape, metrics_port)
            assert _sample(metrics, 'sdxl_operator_reconciles_total{kind="SDXLFineTune",outcome="success"}') >= 1
            assert _sample(metrics, 'sdxl_operator_api_request_duration_seconds_count{kind="Job",verb="create"}') == 1
        finally:
            process.terminate()
            await asyncio.to_thread(process.wait, 20)
            log.close()
        assert process.returncode == 0, (tmp_path / "operator.log").read_text()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        return str(response.read().decode())


def _sample(exposition: str, name_and_labels: str) -> float:
    values = [float(line.rsplit(" ", 1)[1]) for line in exposition.splitlines() if line.startswith(name_and_labels + " ")]
    assert values, f"{name_and_labels} is not in the metrics:\n{exposition}"
    return values[0]
