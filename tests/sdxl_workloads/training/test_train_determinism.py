"""A fixed seed gives the same LoRA, byte for byte; another seed gives another."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def test_same_seed_same_lora_and_another_seed_another(tmp_path: Path, kit: Any) -> None:
    training = {"maxSteps": 5, "batchSize": 2, "noiseOffset": 0.05}
    first = kit.run_train(tmp_path, kit.spec_with({"training": training}), name="a")
    second = kit.run_train(tmp_path, kit.spec_with({"training": training}), name="b")
    other = kit.run_train(tmp_path, kit.spec_with({"training": {**training, "seed": 7}}), name="c")
    assert first.exit_code == second.exit_code == other.exit_code == 0

    def lora(run: Any) -> bytes:
        return (run.output / "lora" / "pytorch_lora_weights.safetensors").read_bytes()

    assert lora(first) == lora(second)
    assert first.result["metrics"]["loraSha256"] == second.result["metrics"]["loraSha256"]
    assert lora(first) != lora(other)
    # The validation images are seeded too.
    grid = "validation/step-000005.png"
    assert (first.output / grid).read_bytes() == (second.output / grid).read_bytes()
