"""Bad input is found before training: exit 2, one InvalidInput message naming the field or file,
and nothing written to the output."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from sdxl_contract import exit_codes
from sdxl_workloads import cli


def _photos(folder: Path, count: int, size: int = 96) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        Image.new("RGB", (size, size), (30 * i, 100, 200)).save(folder / f"p{i}.png")
    return str(folder)


def _corrupt(folder: Path) -> str:
    _photos(folder, 3)
    (folder / "p1.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    return str(folder)


# (case, spec overrides (a callable gets the tmp folder), words the message must contain)
CASES: list[tuple[str, Any, list[str]]] = [
    ("8-bit AdamW without CUDA", {"training": {"optimizer": "adamw8bit"}},
     ["spec.training.optimizer", "adamw8bit", "GPU"]),
    ("unknown optimizer", {"training": {"optimizer": "sgd"}}, ["spec.training.optimizer", "sgd"]),
    ("fp16 on CPU", {"training": {"mixedPrecision": "fp16"}}, ["spec.training.mixedPrecision", "fp16"]),
    ("zero steps", {"training": {"maxSteps": 0}}, ["spec.training.maxSteps"]),
    ("negative rank", {"training": {"rank": -1}}, ["spec.training.rank"]),
    ("target modules that match nothing", {"training": {"targetModules": ["attn_qq"]}},
     ["spec.training.targetModules", "attn_qq"]),
    ("prior preservation without a class prompt", {"priorPreservation": {"enabled": True}}, ["spec.classPrompt"]),
    ("missing base model folder", lambda tmp: {"baseModel": str(tmp / "no-such-model")}, ["spec.baseModel", "no-such-model"]),
    ("empty image folder", lambda tmp: {"instanceImages": _photos(tmp / "empty", 0)}, ["empty"]),
    ("too few images", lambda tmp: {"instanceImages": _photos(tmp / "two", 2)}, ["two"]),
    ("corrupt image", lambda tmp: {"instanceImages": _corrupt(tmp / "corrupt")}, ["p1.png"]),
    ("images far smaller than the resolution",
     lambda tmp: {"instanceImages": _photos(tmp / "small", 3, size=40),
                  "training": {"resolution": 128}}, ["too small", "spec.training.resolution"]),
]


@pytest.mark.parametrize(("case", "overrides", "words"), CASES, ids=[c[0] for c in CASES])
def test_bad_input_fails_early_with_a_clear_message(tmp_path: Path, kit: Any, case: str,
                                                    overrides: Any, words: list[str]) -> None:
    if isinstance(overrides, Callable):  # type: ignore[arg-type]
        overrides = overrides(tmp_path)
    output = tmp_path / "out"
    result = kit.run_train(tmp_path, kit.spec_with(overrides), output=output)
    assert result.exit_code == 2, case
    assert result.result is not None and result.result["status"] == "Failed"
    assert result.result["reason"] == "InvalidInput"
    for word in words:
        assert word in result.result["message"], (word, result.result["message"])
    assert result.of("progress") == []
    assert not output.exists()


def test_an_output_that_cannot_be_written_is_refused_before_training(tmp_path: Path, kit: Any) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    result = kit.run_train(tmp_path, kit.spec_with(), output=blocker / "run")
    assert result.exit_code == 2 and result.result is not None
    assert result.result["reason"] == "InvalidInput" and "a-file" in result.result["message"]
    assert blocker.read_text() == "not a folder"


def test_a_spec_without_any_output_is_refused(tmp_path: Path, kit: Any) -> None:
    import yaml

    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(yaml.safe_dump(kit.spec_with()))
    log = tmp_path / "log"
    assert cli.main(["train", "--spec", str(spec_file), "--termination-log", str(log)]) == exit_codes.PERMANENT_FAILURE_EXIT_CODE
    assert "spec.output" in log.read_text()


def test_a_run_failing_mid_training_publishes_nothing(tmp_path: Path, kit: Any,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from sdxl_workloads.train import training_loop

    original = training_loop.micro_step_loss

    def explode(run: Any, micro_index: int) -> Any:
        if run.step == 3:
            raise RuntimeError("simulated device failure")
        return original(run, micro_index)

    monkeypatch.setattr(training_loop, "micro_step_loss", explode)
    output = tmp_path / "out"
    run = kit.run_train(tmp_path, kit.spec_with({"training": {"maxSteps": 6}}), output=output)
    assert run.exit_code == exit_codes.RETRYABLE_FAILURE_EXIT_CODE  # unexpected errors get the Job's retries
    assert not output.exists()
    log = (tmp_path / "run-termination-log").read_text()
    assert '"reason":"InternalError"' in log and "simulated device failure" in log
