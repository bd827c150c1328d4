"""Artifact URIs: local, pvc://, s3:// (moto over real HTTP) and builtin: references."""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from pathlib import Path

import boto3
import pytest

from sdxl_contract.uris import scheme_of
from sdxl_workloads.models.references import local_input, resolve_model
from sdxl_workloads.protocol import WorkloadError
from sdxl_workloads.storage import local
from sdxl_workloads.storage.output import Output, check_writable
from sdxl_workloads.storage.pvc import pvc_path

# These modules also run in the Neuron image (compile: storage, spec files, builtin:tiny), so
# `make test-compat` runs these tests against its older library versions too.
pytestmark = pytest.mark.compat


@pytest.fixture
def pvc_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "pvc"
    (root / "artifacts").mkdir(parents=True)
    monkeypatch.setenv("SDXL_PVC_ROOT", str(root))
    return root


@pytest.fixture
def s3_client(s3_server: str):
    return boto3.client("s3", endpoint_url=s3_server, region_name="us-east-1",
                        aws_access_key_id="testing", aws_secret_access_key="testing")


@pytest.fixture
def private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    cache = tmp_path / "cache"
    monkeypatch.setenv("SDXL_CACHE_DIR", str(cache))
    return cache


def _keys(s3_client, bucket: str) -> list[str]:
    return sorted(obj["Key"] for obj in s3_client.list_objects_v2(Bucket=bucket).get("Contents", []))


@pytest.mark.parametrize(("uri", "scheme"), [
    ("s3://bucket/prefix", "s3"),
    ("pvc://claim/path", "pvc"),
    ("builtin:tiny", "builtin"),
    ("/abs/path", "local"),
    ("relative/path", "local"),
    ("file:///abs/path", "local"),
    ("stabilityai/stable-diffusion-xl-base-1.0", "local"),  # resolve_model tells HF ids apart
])
def test_scheme_of(uri: str, scheme: str) -> None:
    assert scheme_of(uri) == scheme


def test_pvc_uri_maps_to_the_mounted_claim(pvc_root: Path) -> None:
    assert pvc_path("pvc://artifacts/runs/a") == pvc_root / "artifacts" / "runs" / "a"
    assert pvc_path("pvc://artifacts") == pvc_root / "artifacts"


@pytest.mark.parametrize(("uri", "message"), [
    ("pvc://", "not a valid pvc:// URI"),
    ("pvc://artifacts/../other", "not a valid pvc:// URI"),
    ("pvc://missing-claim/x", "volume claim 'missing-claim' is not mounted"),
])
def test_bad_pvc_uris_are_refused_with_a_reason(pvc_root: Path, uri: str, message: str) -> None:
    with pytest.raises(WorkloadError, match=message) as err:
        pvc_path(uri)
    assert err.value.reason == "InvalidInput"


def test_resolve_model_builtin_local_pvc_and_hf(tiny_model_path: Path, tmp_path: Path, pvc_root: Path) -> None:
    (pvc_root / "artifacts" / "model").mkdir()
    assert resolve_model("builtin:tiny") == str(tiny_model_path)
    assert resolve_model(str(tmp_path)) == str(tmp_path)
    assert resolve_model(f"file://{tmp_path}") == str(tmp_path)
    assert resolve_model("pvc://artifacts/model") == str(pvc_root / "artifacts" / "model")
    # Hub ids pass through untouched for from_pretrained to download.
    assert resolve_model("stabilityai/stable-diffusion-xl-base-1.0") == "stabilityai/stable-diffusion-xl-base-1.0"
    assert resolve_model("madebyollin/sdxl-vae-fp16-fix") == "madebyollin/sdxl-vae-fp16-fix"


@pytest.mark.parametrize(("ref", "message"), [
    ("builtin:huge", "unknown built-in model 'builtin:huge'; choose one of builtin:tiny, builtin:tiny-mid"),
    ("/no/such/model", "model '/no/such/model' not found"),
    ("./models/missing", "model './models/missing' not found"),
    ("pvc://nope/model", "volume claim 'nope' is not mounted"),
])
def test_resolve_model_refuses_what_cannot_be_loaded(pvc_root: Path, ref: str, message: str) -> None:
    with pytest.raises(WorkloadError, match=message) as err:
        resolve_model(ref)
    assert err.value.reason == "InvalidInput"


def test_local_input_builtin_and_local(sample_images_path: Path, tmp_path: Path) -> None:
    assert local_input("builtin:sample-subject") == sample_images_path
    assert local_input(str(tmp_path)) == tmp_path
    with pytest.raises(WorkloadError, match="unknown built-in input 'builtin:other'") as err:
        local_input("builtin:other")
    with pytest.raises(WorkloadError, match=r"no such file or folder") as err:
        local_input(str(tmp_path / "missing"))
    assert err.value.reason == "InvalidInput"


def test_s3_input_folder_is_downloaded_and_reused_until_it_changes(
    s3_bucket: str, s3_client, private_cache: Path
) -> None:
    s3_client.put_object(Bucket=s3_bucket, Key="photos/a.png", Body=b"image-a")
    s3_client.put_object(Bucket=s3_bucket, Key="photos/a.txt", Body=b"caption")
    s3_client.put_object(Bucket=s3_bucket, Key="photos/sub/b.png", Body=b"image-b")
    s3_client.put_object(Bucket=s3_bucket, Key="photos-other/c.png", Body=b"not ours")
    folder = local_input(f"s3://{s3_bucket}/photos")
    assert folder.is_relative_to(private_cache)
    assert sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()) == [
        "a.png", "a.txt", "sub/b.png"]
    assert (folder / "sub" / "b.png").read_bytes() == b"image-b"
    stamp = (folder / "a.png").stat().st_mtime_ns

    assert local_input(f"s3://{s3_bucket}/photos/") == folder
    assert (folder / "a.png").stat().st_mtime_ns == stamp  # unchanged objects: not fetched again

    s3_client.put_object(Bucket=s3_bucket, Key="photos/a.png", Body=b"image-a, retouched")
    assert local_input(f"s3://{s3_bucket}/photos").joinpath("a.png").read_bytes() == b"image-a, retouched"
    leftovers = [p.name for p in folder.parent.iterdir() if p.name.startswith(".")]
    assert leftovers == []


def test_s3_input_single_object(s3_bucket: str, s3_client, private_cache: Path) -> None:
    s3_client.put_object(Bucket=s3_bucket, Key="loras/x.safetensors", Body=b"weights")
    path = local_input(f"s3://{s3_bucket}/loras/x.safetensors")
    assert path.is_file() and path.read_bytes() == b"weights"


def test_s3_model_is_resolved_to_a_local_folder(s3_bucket: str, s3_client, private_cache: Path) -> None:
    s3_client.put_object(Bucket=s3_bucket, Key="models/m/model_index.json", Body=b"{}")
    resolved = Path(resolve_model(f"s3://{s3_bucket}/models/m"))
    assert (resolved / "model_index.json").read_bytes() == b"{}"


def test_missing_s3_input_is_invalid_input(s3_bucket: str, private_cache: Path) -> None:
    with pytest.raises(WorkloadError, match=f"s3://{s3_bucket}/nothing: no such object or prefix") as err:
        local_input(f"s3://{s3_bucket}/nothing")
    assert err.value.reason == "InvalidInput"


# ---------------------------------------------------------------------------------------------
# check_writable


def test_check_writable_accepts_a_new_folder_without_creating_it(tmp_path: Path) -> None:
    target = tmp_path / "runs" / "new" / "deep"
    check_writable(str(target))
    check_writable(str(tmp_path))
    assert not (tmp_path / "runs").exists()
    assert list(tmp_path.iterdir()) == []  # the probe is gone


@pytest.mark.parametrize(("layout", "uri", "message"), [
    ("file", "{tmp}/afile", "is a file, not a folder"),
    ("file", "{tmp}/afile/sub/out", "cannot create a folder under .*afile, which is a file"),
    ("none", "pvc://absent/out", "volume claim 'absent' is not mounted"),
    ("none", "builtin:tiny", "built-in references are read-only"),
])
def test_check_writable_refuses_with_a_clear_message(
    tmp_path: Path, pvc_root: Path, layout: str, uri: str, message: str
) -> None:
    if layout == "file":
        (tmp_path / "afile").write_text("x")
    with pytest.raises(WorkloadError, match=message) as err:
        check_writable(uri.format(tmp=tmp_path))
    assert err.value.reason == "InvalidInput"


def test_check_writable_reports_a_permission_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # These tests run as root, for whom chmod cannot make a folder unwritable, so the refusal
    # the kernel would give is simulated at the one call that meets it.
    def refuse(*args: object, **kwargs: object) -> None:
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    with pytest.raises(WorkloadError, match=r"is not writable \(Permission denied\); choose another output"):
        check_writable(str(tmp_path / "out"))


def test_check_writable_on_s3(s3_bucket: str, s3_client) -> None:
    check_writable(f"s3://{s3_bucket}/runs/a")
    check_writable(f"s3://{s3_bucket}")
    assert _keys(s3_client, s3_bucket) == []  # the probe object was removed
    with pytest.raises(WorkloadError, match="bucket 'no-such-bucket' does not exist") as err:
        check_writable("s3://no-such-bucket/runs")
    assert err.value.reason == "InvalidInput"


# ---------------------------------------------------------------------------------------------
# Output


def _stage_run(output: Output) -> None:
    (output.local_dir / "lora").mkdir()
    (output.local_dir / "lora" / "pytorch_lora_weights.safetensors").write_bytes(b"lora")
    (output.local_dir / "training_args.json").write_text("{}")


def test_output_local_publish_and_addressing(tmp_path: Path) -> None:
    dest = tmp_path / "out"
    with Output(str(dest)) as output:
        staging = output.local_dir
        _stage_run(output)
        assert not output.exists("lora/pytorch_lora_weights.safetensors")
        uris = output.publish()
        assert uris == [str(dest / "lora/pytorch_lora_weights.safetensors"), str(dest / "training_args.json")]
        assert (dest / "lora" / "pytorch_lora_weights.safetensors").read_bytes() == b"lora"
        assert output.exists("lora/pytorch_lora_weights.safetensors")
        assert output.uri_of("lora") == str(dest / "lora")
        assert output.listdir() == ["lora", "training_args.json"]
        # Publishing again overwrites with the newer staged content.
        (output.local_dir / "training_args.json").write_text('{"v": 2}')
        output.publish("training_args.json")
        assert (dest / "training_args.json").read_text() == '{"v": 2}'
    assert not staging.exists()
    assert sorted(p.name for p in dest.iterdir()) == ["lora", "training_args.json"]  # no temp files


def test_output_pvc_uris_stay_pvc_uris(pvc_root: Path) -> None:
    with Output("pvc://artifacts/runs/a/") as output:
        _stage_run(output)
        assert output.publish("lora") == ["pvc://artifacts/runs/a/lora/pytorch_lora_weights.safetensors"]
    assert (pvc_root / "artifacts/runs/a/lora/pytorch_lora_weights.safetensors").read_bytes() == b"lora"


def test_output_publishes_complete_marker_last(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    order: list[str] = []
    real_copy = local.copy_file_atomically
    monkeypatch.setattr(local, "copy_file_atomically",
                        lambda source, dest: (order.append(dest.name), real_copy(source, dest)))
    (tmp_path / "out" / "ckpt").mkdir(parents=True)  # exists already: published file by file
    with Output(str(tmp_path / "out")) as output:
        folder = output.local_dir / "ckpt"
        folder.mkdir()
        for name in ("COMPLETE", "a.bin", "z.bin"):
            (folder / name).write_text(name)
        output.publish("ckpt")
    assert order == ["a.bin", "z.bin", "COMPLETE"]


def test_new_folder_appears_at_once_and_failed_copies_leave_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dest = tmp_path / "out"
    with Output(str(dest)) as output:
        (output.local_dir / "checkpoints" / "step-2").mkdir(parents=True)
        (output.local_dir / "checkpoints" / "step-2" / "state.bin").write_bytes(b"x" * 1000)
        (output.local_dir / "model.bin").write_bytes(b"y" * 1000)

        def copy_half_then_fail(source: str, dest: str, *args: object, **kwargs: object) -> None:
            Path(dest).write_bytes(Path(source).read_bytes()[:500])
            raise OSError(errno.ENOSPC, "No space left on device")

        monkeypatch.setattr(shutil, "copyfile", copy_half_then_fail)
        monkeypatch.setattr(shutil, "copytree", lambda src, dst, **kw: (
            (Path(dst) / "state.bin").write_bytes(b"half"), copy_half_then_fail(src, dst)))
        with pytest.raises(WorkloadError, match="No space left on device") as err:
            output.publish("model.bin")
        assert err.value.reason == "StorageError"
        with pytest.raises(WorkloadError):
            output.publish("checkpoints/step-2")
        monkeypatch.undo()
        assert list(dest.rglob("*")) == [dest / "checkpoints"]  # no partial file or folder

        output.publish("checkpoints/step-2")
        assert (dest / "checkpoints" / "step-2" / "state.bin").read_bytes() == b"x" * 1000


def test_output_download_and_delete_local(tmp_path: Path) -> None:
    dest = tmp_path / "out"
    (dest / "checkpoints" / "step-4").mkdir(parents=True)
    (dest / "checkpoints" / "step-4" / "state.bin").write_bytes(b"state")
    with Output(str(dest)) as output:
        assert output.listdir("checkpoints") == ["step-4"]
        local = output.download("checkpoints/step-4")
        assert local == output.local_dir / "checkpoints" / "step-4"
        assert (local / "state.bin").read_bytes() == b"state"
        output.delete("checkpoints/step-4")
        assert output.listdir("checkpoints") == []
        with pytest.raises(ValueError, match="whole output"):
            output.delete("")
        with pytest.raises(WorkloadError, match="no such file or folder"):
            output.download("checkpoints/step-9")


def test_output_on_s3(s3_bucket: str, s3_client) -> None:
    uri = f"s3://{s3_bucket}/runs/a"
    with Output(uri) as output:
        _stage_run(output)
        (output.local_dir / "checkpoints" / "step-2").mkdir(parents=True)
        (output.local_dir / "checkpoints" / "step-2" / "state.bin").write_bytes(b"state")
        assert output.publish("lora") == [f"{uri}/lora/pytorch_lora_weights.safetensors"]
        output.publish()
        assert _keys(s3_client, s3_bucket) == [
            "runs/a/checkpoints/step-2/state.bin", "runs/a/lora/pytorch_lora_weights.safetensors",
            "runs/a/training_args.json"]
        assert output.exists("checkpoints/step-2")
        assert not output.exists("checkpoints/step-9")
        assert output.listdir("checkpoints") == ["step-2"]
        assert output.listdir("nothing-here") == []
        shutil.rmtree(output.local_dir / "checkpoints")
        assert (output.download("checkpoints/step-2") / "state.bin").read_bytes() == b"state"
        assert output.download("training_args.json").read_text() == "{}"
        output.delete("checkpoints/step-2")
        assert not output.exists("checkpoints/step-2")
    body = s3_client.get_object(Bucket=s3_bucket, Key="runs/a/lora/pytorch_lora_weights.safetensors")["Body"]
    assert body.read() == b"lora"


def test_output_s3_publish_failure_is_a_storage_error(s3_bucket: str) -> None:
    with Output("s3://no-such-bucket-here/x") as output:
        (output.local_dir / "f").write_text("x")
        with pytest.raises(WorkloadError, match="s3://no-such-bucket-here/x") as err:
            output.publish()
        assert err.value.reason == "StorageError"


def test_builtin_output_is_refused() -> None:
    with pytest.raises(WorkloadError, match="read-only"):
        Output("builtin:tiny")


def test_staging_root_is_honoured(tmp_path: Path) -> None:
    with Output(str(tmp_path / "out"), staging_root=tmp_path) as output:
        assert output.local_dir.parent == tmp_path
        assert os.access(output.local_dir, os.W_OK)
