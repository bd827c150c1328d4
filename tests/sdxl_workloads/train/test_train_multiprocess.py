"""Data-parallel training through accelerate, as on a multi-GPU node, here with two CPU processes
(gloo) started by torchrun; only the main process writes checkpoints, artifacts and the result."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml


@pytest.mark.slow
def test_two_processes_train_one_lora_and_report_once(tmp_path: Path, kit: Any, tiny_model_path: Path) -> None:
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent))
    assert torchrun, "torchrun comes with torch"
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(yaml.safe_dump(kit.spec_with({"training": {"maxSteps": 4, "checkpointEvery": 2}})))
    log = tmp_path / "termination-log"
    env = {**os.environ, "ACCELERATE_USE_CPU": "true", "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [torchrun, "--nproc_per_node", "2", "-m", "sdxl_workloads", "train", "--spec", str(spec_file),
         "--output", str(tmp_path / "out"), "--termination-log", str(log)],
        env=env, capture_output=True, text=True, timeout=240, check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    events = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert [e["event"] for e in events].count("result") == 1
    assert any("2 process(es)" in e.get("message", "") for e in events)
    assert [e["step"] for e in events if e["event"] == "checkpoint"] == [2]
    assert json.loads(log.read_text())["status"] == "Succeeded"
    pipe = kit.load_pipeline(tiny_model_path, tmp_path / "out" / "lora")
    assert any("lora_A" in name for name, _ in pipe.unet.named_parameters())
