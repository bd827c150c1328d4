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
    kohya = [Path(run.result["artifacts"]["kohyaLora"]).read_bytes() for run in (first, second)]
    assert kohya[0] == kohya[1]
    assert first.result["metrics"]["loraSha256"] == second.result["metrics"]["loraSha256"]
    assert lora(first) != lora(other)
    # The validation images are seeded too.
    grid = "validation/step-000005.png"
    assert (first.output / grid).read_bytes() == (second.output / grid).read_bytes()


def test_safetensors_headers_are_written_in_one_order(tmp_path: Path) -> None:
    import torch
    from safetensors.torch import load_file, save_file

    from sdxl_workloads.train.lora_export import canonicalize_safetensors

    tensors = {"b.weight": torch.arange(6.0).reshape(2, 3), "a.weight": torch.ones(5, dtype=torch.float16)}
    files = []
    for index, metadata in enumerate([{"format": "pt", "x": "1"}, {"x": "1", "format": "pt"}]):
        path = tmp_path / f"{index}.safetensors"
        save_file(tensors, str(path), metadata=metadata)
        files.append(canonicalize_safetensors(path))
    assert files[0].read_bytes() == files[1].read_bytes()
    loaded = load_file(str(files[0]))
    assert all(torch.equal(loaded[k], v) for k, v in tensors.items())
