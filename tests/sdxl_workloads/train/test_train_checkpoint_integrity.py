"""Checkpoints survive what kills pods: a crash mid-copy, a torn newest checkpoint, a hostile file.

- A process killed (SIGKILL, no cleanup runs) while publishing a checkpoint or a LoRA leaves no
  final-named folder and no half-overwritten file: the copy goes to a temp name and is renamed.
- `--resume latest` skips a newest checkpoint that does not read and resumes from the newest one
  that does, saying which.
- Nothing in a checkpoint is unpickled as code (weights_only loading).
"""

from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from sdxl_workloads.storage.output import Output
from sdxl_workloads.train import checkpoints

# A child process that publishes `relpath` from a staged copy and stalls half way through the
# bytes of the file named STALL, so the parent can kill it there.
_PUBLISH_AND_STALL = textwrap.dedent("""
    import shutil, sys, time
    from pathlib import Path
    from sdxl_workloads.storage.output import Output

    dest, relpath, stall_name, ready = sys.argv[1], sys.argv[2], sys.argv[3], Path(sys.argv[4])
    out = Output(dest)
    staged = out.local_dir / relpath
    files = {"a.safetensors": b"A" * 4096, stall_name: b"N" * 65536, "COMPLETE": b"1"}
    if "/" in relpath and not relpath.endswith(".safetensors"):
        staged.mkdir(parents=True)
        for name, data in files.items():
            (staged / name).write_bytes(data)
    else:
        staged.parent.mkdir(parents=True, exist_ok=True)
        staged.write_bytes(files[stall_name])
    real_copyfile = shutil.copyfile

    def stalling_copyfile(src, dst, *args, **kwargs):
        if Path(src).name == stall_name:
            data = Path(src).read_bytes()
            with open(dst, "wb") as handle:
                handle.write(data[: len(data) // 2])
                handle.flush()
            ready.write_text("half")
            time.sleep(600)
        return real_copyfile(src, dst, *args, **kwargs)

    shutil.copyfile = stalling_copyfile
    out.publish(relpath)
""")


def _kill_mid_publish(tmp_path: Path, dest: Path, relpath: str, stall_name: str) -> None:
    ready = tmp_path / f"ready-{stall_name}"
    child = subprocess.Popen([sys.executable, "-c", _PUBLISH_AND_STALL, str(dest), relpath, stall_name, str(ready)])
    try:
        deadline = time.monotonic() + 60
        while not ready.exists():
            assert child.poll() is None, "the publishing process ended before the stall"
            assert time.monotonic() < deadline, "the publishing process never reached the stall"
            time.sleep(0.05)
        child.send_signal(signal.SIGKILL)  # like a node crash: no except or finally runs
    finally:
        child.wait(timeout=30)


def test_a_checkpoint_killed_mid_copy_never_appears_under_its_final_name(tmp_path: Path) -> None:
    dest = tmp_path / "out"
    _kill_mid_publish(tmp_path, dest, "checkpoints/step-8", checkpoints.STATE_FILE)
    leftovers = os.listdir(dest / "checkpoints")
    assert "step-8" not in leftovers
    assert all(name.startswith(".") for name in leftovers)  # at most a hidden temp folder
    output = Output(str(dest))
    try:
        assert checkpoints.complete_steps(output) == []
        assert checkpoints.fetch_latest_checkpoint(output) is None
    finally:
        output.close()


def test_a_published_file_killed_mid_overwrite_keeps_its_old_content(tmp_path: Path) -> None:
    dest = tmp_path / "out"
    lora = dest / "lora" / "pytorch_lora_weights.safetensors"
    lora.parent.mkdir(parents=True)
    lora.write_bytes(b"old" * 1000)
    _kill_mid_publish(tmp_path, dest, "lora/pytorch_lora_weights.safetensors", "pytorch_lora_weights.safetensors")
    assert lora.read_bytes() == b"old" * 1000


class _Planted:
    """Unpickling this runs code: writes a file. weights_only loading must refuse it."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> Any:
        return (Path.write_text, (self.marker, "code ran"))


@pytest.fixture(scope="module")
def checkpointed(tmp_path_factory: pytest.TempPathFactory, kit: Any) -> tuple[Path, dict[str, Any]]:
    """A finished 6-step run with checkpoints at 2 and 4 kept, to resume from (copied per test)."""
    spec = kit.spec_with({"training": {"maxSteps": 6, "checkpointEvery": 2}})
    workdir = tmp_path_factory.mktemp("integrity")
    result = kit.run_train(workdir, spec)
    assert result.exit_code == 0
    assert sorted(p.name for p in (result.output / "checkpoints").iterdir()) == ["step-2", "step-4"]
    return result.output, spec


def _copy(source: Path, dest: Path) -> Path:
    import shutil

    shutil.copytree(source / "checkpoints", dest / "checkpoints")
    return dest


@pytest.mark.slow
def test_resume_falls_back_to_the_newest_readable_checkpoint(tmp_path: Path, kit: Any,
                                                             checkpointed: tuple[Path, dict[str, Any]]) -> None:
    source, spec = checkpointed
    out = _copy(source, tmp_path / "out")
    state = out / "checkpoints" / "step-4" / checkpoints.STATE_FILE
    state.write_bytes(state.read_bytes()[:100])  # torn by a crash: COMPLETE is there, the data is not
    resumed = kit.run_train(tmp_path, spec, output=out, resume="latest", name="resumed")
    assert resumed.exit_code == 0, resumed.stdout_lines[-5:]
    messages = [e.get("message", "") for e in resumed.of("log")]
    assert any("step-4 is unreadable" in m for m in messages), messages
    assert any("resuming from checkpoint" in m and "step-2" in m for m in messages), messages
    assert resumed.of("progress")[0]["step"] == 3


@pytest.mark.slow
def test_a_pickle_in_a_checkpoint_is_never_run(tmp_path: Path, kit: Any,
                                               checkpointed: tuple[Path, dict[str, Any]]) -> None:
    source, spec = checkpointed
    out = _copy(source, tmp_path / "out")
    marker = tmp_path / "pwned"
    state = out / "checkpoints" / "step-4" / checkpoints.STATE_FILE
    import torch

    torch.save({"step": 4, "payload": _Planted(marker)}, state, pickle_protocol=pickle.DEFAULT_PROTOCOL)
    resumed = kit.run_train(tmp_path, spec, output=out, resume="latest", name="resumed")
    assert not marker.exists()
    assert resumed.exit_code == 0
    assert resumed.of("progress")[0]["step"] == 3  # step-4 refused, step-2 used


def test_the_training_state_round_trips_through_weights_only_loading(tmp_path: Path) -> None:
    """Optimizer, schedule, generator and all global RNG states come back exactly."""
    import random

    import numpy as np
    import torch

    from sdxl_workloads import random_draws

    model = torch.nn.Linear(3, 3)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(torch.ones(1, 3)).sum().backward()
    optimizer.step()
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    generator = random_draws.training_generator("cpu", 7)
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    checkpoints.write_checkpoint_files(tmp_path, models={"m": model}, optimizer=optimizer, lr_scheduler=scheduler,
                                       generator=generator, step=5, losses=[0.5], spec={"a": 1})
    expected = (random.random(), float(np.random.rand()), float(torch.rand(1)))
    random.seed(9)
    np.random.seed(9)
    torch.manual_seed(9)
    state = checkpoints.read_training_state(tmp_path)
    checkpoints.set_rng_state(state["rng"])
    assert (random.random(), float(np.random.rand()), float(torch.rand(1))) == expected
    assert state["step"] == 5 and state["losses"] == [0.5]
    assert torch.equal(state["generator"], generator.get_state())
    assert set(state["optimizer"]["state"][0]) == {"step", "exp_avg", "exp_avg_sq"}
