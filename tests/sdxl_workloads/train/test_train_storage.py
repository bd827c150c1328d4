"""Artifact URIs end to end: photos from and results to S3 (moto's server over real HTTP, standing
in for AWS, which cannot be reached here), and pvc:// outputs."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import boto3
import pytest

from sdxl_workloads.train import train_command


def _keys(bucket: str, prefix: str) -> list[str]:
    client = boto3.client("s3")
    listing = client.list_objects_v2(Bucket=bucket, Prefix=prefix)
    return sorted(item["Key"][len(prefix):] for item in listing.get("Contents", []))


@pytest.mark.slow
def test_train_from_and_to_s3_with_a_preemption_in_between(tmp_path: Path, kit: Any, s3_bucket: str,
                                                            sample_images_path: Path, tiny_model_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    client = boto3.client("s3")
    for photo in sorted(sample_images_path.iterdir()):
        client.upload_file(str(photo), s3_bucket, f"photos/{photo.name}")
    output = f"s3://{s3_bucket}/runs/one"
    spec = kit.spec_with({"instanceImages": f"s3://{s3_bucket}/photos",
                          "training": {"maxSteps": 4, "checkpointEvery": 2}})

    def preempt(plan: Any) -> Any:
        def stop(run: Any) -> None:
            if run.step == 3:
                raise KeyboardInterrupt

        return stop

    with monkeypatch.context() as patch:
        patch.setattr(train_command, "validation_hook", preempt)
        stopped = kit.run_train(tmp_path, spec, output=output)
    assert stopped.exit_code == 130
    assert _keys(s3_bucket, "runs/one/") == [
        "checkpoints/step-2/COMPLETE", "checkpoints/step-2/lora_state.safetensors",
        "checkpoints/step-2/spec.json", "checkpoints/step-2/training_state.pt",
    ]

    result = kit.run_train(tmp_path, spec, output=output, resume="latest")
    assert result.exit_code == 0, result.stdout_lines[-5:]
    assert result.of("progress")[0]["step"] == 3
    assert result.result is not None
    artifacts = result.result["artifacts"]
    assert artifacts == {
        "lora": f"{output}/lora/pytorch_lora_weights.safetensors",
        "kohyaLora": f"{output}/lora/one_kohya.safetensors",
        "validationImages": f"{output}/validation",
    }
    keys = _keys(s3_bucket, "runs/one/")
    assert {"lora/pytorch_lora_weights.safetensors", "lora/one_kohya.safetensors", "training_args.json",
            "validation/step-000004.png"} <= set(keys)

    local = tmp_path / "downloaded"
    local.mkdir()
    client.download_file(s3_bucket, "runs/one/lora/pytorch_lora_weights.safetensors",
                         str(local / "pytorch_lora_weights.safetensors"))
    data = (local / "pytorch_lora_weights.safetensors").read_bytes()
    assert hashlib.sha256(data).hexdigest() == result.result["metrics"]["loraSha256"]
    pipe = kit.load_pipeline(tiny_model_path, local)
    assert any("lora_A" in name for name, _ in pipe.unet.named_parameters())


def test_train_to_a_pvc_uri(tmp_path: Path, kit: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "mounts" / "artifacts").mkdir(parents=True)
    monkeypatch.setenv("SDXL_PVC_ROOT", str(tmp_path / "mounts"))
    result = kit.run_train(tmp_path, kit.spec_with({"training": {"maxSteps": 2}}),
                           output="pvc://artifacts/finetunes/default/me")
    assert result.exit_code == 0 and result.result is not None
    lora = tmp_path / "mounts" / "artifacts" / "finetunes" / "default" / "me" / "lora" / "pytorch_lora_weights.safetensors"
    assert lora.is_file()
    assert result.result["artifacts"]["lora"] == "pvc://artifacts/finetunes/default/me/lora/pytorch_lora_weights.safetensors"
