"""The cap on instance photos: a folder past it is refused before any photo is decoded, with exit 2,
one InvalidInput message giving the count and the limit, and nothing written to the output."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import yaml
from PIL import Image

from sdxl_contract import exit_codes
from sdxl_workloads import cli


def _photos(folder: Path, count: int) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    encoded = io.BytesIO()
    Image.new("RGB", (96, 96), (30, 100, 200)).save(encoded, format="PNG")
    for i in range(count):
        (folder / f"p{i:04d}.png").write_bytes(encoded.getvalue())
    return str(folder)


def test_1001_photos_are_refused_under_the_default_cap(tmp_path: Path, kit: Any) -> None:
    output = tmp_path / "out"
    result = kit.run_train(tmp_path, kit.spec_with({"instanceImages": _photos(tmp_path / "many", 1001)}),
                           output=output)
    assert result.exit_code == exit_codes.PERMANENT_FAILURE_EXIT_CODE
    assert result.result is not None and result.result["reason"] == "InvalidInput"
    message = result.result["message"]
    assert "has 1001 photos, more than this cluster's limit of 1000" in message, message
    assert "limits.maxImages" in message
    assert result.of("progress") == [] and not output.exists()


def test_the_operators_limit_arrives_as_a_flag(tmp_path: Path, kit: Any) -> None:
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(yaml.safe_dump(kit.spec_with({"instanceImages": _photos(tmp_path / "five", 5)})))
    log = tmp_path / "log"
    argv = ["train", "--spec", str(spec_file), "--output", str(tmp_path / "out"), "--termination-log", str(log),
            "--max-instance-images", "4"]
    assert cli.main(argv) == exit_codes.PERMANENT_FAILURE_EXIT_CODE
    result = json.loads(log.read_text())
    assert result["reason"] == "InvalidInput" and "has 5 photos, more than this cluster's limit of 4" in result["message"]
    assert not (tmp_path / "out").exists()
