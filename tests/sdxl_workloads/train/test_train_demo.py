"""The trainer demo (python -m sdxl_workloads.train.trainer_demo), shortened."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from PIL import Image

from sdxl_workloads.train import trainer_demo


@pytest.mark.slow
def test_the_demo_trains_and_writes_base_and_lora_images(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert trainer_demo.main(["--out", str(tmp_path), "--steps", "40"]) == 0
    printed = capsys.readouterr().out
    assert (tmp_path / "finetune" / "lora" / "pytorch_lora_weights.safetensors").is_file()
    for index in range(len(trainer_demo.PROMPTS)):
        base = Image.open(tmp_path / "images" / f"{index}-base.png")
        lora = Image.open(tmp_path / "images" / f"{index}-lora.png")
        assert base.size == lora.size == (64, 64)
        assert base.tobytes() != lora.tobytes()
    assert Image.open(tmp_path / "comparison.png").size[0] > 2 * 64
    assert "step   40/40" in printed and str(tmp_path / "comparison.png") in printed
    match = re.search(r"base model ([0-9.]+), with the LoRA ([0-9.]+)", printed)
    assert match and float(match.group(2)) < float(match.group(1))
