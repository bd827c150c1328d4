"""Object keys and relative paths never leave their folder: a key planted in the store such as
`photos/alice/../../../escape` is refused with InvalidInput, and nothing is written outside the
local cache or the output's staging folder. S3 is moto over real HTTP (AWS cannot be reached here).
Also: deleting a published folder that another writer deletes at the same moment is not an error."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import boto3
import pytest

from sdxl_workloads.models.references import local_input
from sdxl_workloads.protocol import WorkloadError
from sdxl_workloads.storage import s3
from sdxl_workloads.storage.local import safe_relpath
from sdxl_workloads.storage.output import Output

pytestmark = pytest.mark.compat

# Deep enough to climb out of `<cache>/s3/<name>/` (or `<staging>/<relpath>/`) into the test's folder.
ESCAPE = "../../../../../escaped.txt"


@pytest.fixture
def s3_client(s3_server: str):
    return boto3.client("s3", endpoint_url=s3_server, region_name="us-east-1",
                        aws_access_key_id="testing", aws_secret_access_key="testing")


def escaped_files(root: Path) -> list[Path]:
    return sorted(root.rglob("escaped.txt"))


@pytest.mark.parametrize(("relpath", "normalised"), [
    ("a/b.png", "a/b.png"),
    ("a//b.png", "a/b.png"),
    ("./a/./b.png", "a/b.png"),
    ("a/", "a"),
    ("", ""),
    ("a..b/c..", "a..b/c.."),  # dots inside a name are a name
])
def test_relative_paths_are_normalised(relpath: str, normalised: str) -> None:
    assert safe_relpath(relpath, "key") == normalised


@pytest.mark.parametrize("relpath", ["..", "../x", "a/../../x", "a/b/../../../x", "/etc/passwd", "//x"])
def test_paths_that_leave_their_folder_are_refused(relpath: str) -> None:
    with pytest.raises(WorkloadError) as caught:
        safe_relpath(relpath, "s3://b/photos: object")
    assert caught.value.reason == "InvalidInput"
    assert "s3://b/photos: object" in caught.value.message and repr(relpath) in caught.value.message


@pytest.mark.parametrize("uri", ["s3://bucket/photos/../other-tenant", "s3://bucket/../x", "s3://../x"])
def test_s3_uris_with_dot_dot_are_refused(uri: str) -> None:
    with pytest.raises(WorkloadError, match=r"leaves its folder|not a valid") as caught:
        s3.split_s3(uri)
    assert caught.value.reason == "InvalidInput"


def test_a_planted_traversal_key_in_an_input_prefix_is_refused(
        s3_bucket: str, s3_client, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The instance-image download (and every s3:// input): one hostile key refuses the whole input."""
    monkeypatch.setenv("SDXL_CACHE_DIR", str(tmp_path / "work" / "cache"))
    s3_client.put_object(Bucket=s3_bucket, Key="photos/alice/1.png", Body=b"png")
    s3_client.put_object(Bucket=s3_bucket, Key=f"photos/alice/{ESCAPE}", Body=b"planted")
    keys = [o["Key"] for o in s3_client.list_objects_v2(Bucket=s3_bucket)["Contents"]]
    assert f"photos/alice/{ESCAPE}" in keys, "the store keeps the key verbatim (the attack's premise)"

    with pytest.raises(WorkloadError) as caught:
        local_input(f"s3://{s3_bucket}/photos/alice")
    assert caught.value.reason == "InvalidInput" and "leaves its folder" in caught.value.message
    assert escaped_files(tmp_path) == []


def test_output_download_refuses_a_planted_traversal_key(s3_bucket: str, s3_client, tmp_path: Path) -> None:
    """Resume downloads checkpoints from the output prefix: a planted key there must not write outside."""
    s3_client.put_object(Bucket=s3_bucket, Key="out/checkpoints/step-1/COMPLETE", Body=b"")
    s3_client.put_object(Bucket=s3_bucket, Key=f"out/checkpoints/step-1/{ESCAPE}", Body=b"planted")
    (tmp_path / "staging-root").mkdir()
    with Output(f"s3://{s3_bucket}/out", staging_root=tmp_path / "staging-root") as out:
        with pytest.raises(WorkloadError) as caught:
            out.download("checkpoints/step-1")
        assert caught.value.reason == "InvalidInput" and "leaves its folder" in caught.value.message
        assert not (out.local_dir / "checkpoints" / "step-1" / "COMPLETE").exists(), "refused before any write"
    assert escaped_files(tmp_path) == []


@pytest.mark.parametrize("method", ["download", "publish", "delete", "exists", "listdir", "uri_of"])
def test_output_relpaths_that_leave_the_output_are_refused(method: str, tmp_path: Path) -> None:
    (tmp_path / "dest").mkdir()
    (tmp_path / "victim").mkdir()
    (tmp_path / "victim" / "keep.txt").write_text("keep")
    with Output(str(tmp_path / "dest"), staging_root=tmp_path) as out:
        (out.local_dir.parent / "victim").mkdir(exist_ok=True)
        with pytest.raises(WorkloadError) as caught:
            getattr(out, method)("../victim")
        assert caught.value.reason == "InvalidInput"
    assert (tmp_path / "victim" / "keep.txt").read_text() == "keep"


def test_two_writers_deleting_one_folder_both_succeed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two trainers on one output both retire the same old checkpoint; the second used to crash with
    a raw FileNotFoundError. Both threads are held until each has decided to rename the folder."""
    dest = tmp_path / "dest"
    (dest / "checkpoints" / "step-1").mkdir(parents=True)
    (dest / "checkpoints" / "step-1" / "state.safetensors").write_text("x")
    barrier = threading.Barrier(2, timeout=30)
    real_rename = os.rename

    def rename_together(source: os.PathLike[str] | str, target: os.PathLike[str] | str) -> None:
        if ".deleting-" in str(target):
            barrier.wait()
        real_rename(source, target)

    monkeypatch.setattr(os, "rename", rename_together)
    outputs = [Output(str(dest)), Output(str(dest))]
    errors: list[BaseException] = []

    def delete(out: Output) -> None:
        try:
            out.delete("checkpoints/step-1")
        except BaseException as err:  # collected for the assertion
            errors.append(err)

    threads = [threading.Thread(target=delete, args=(out,)) for out in outputs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    assert list((dest / "checkpoints").iterdir()) == []
    for out in outputs:
        out.close()


def test_an_s3_output_reports_the_normalised_keys_it_writes(tmp_path: Path) -> None:
    with Output("s3://bucket/runs//alice/./out/", staging_root=tmp_path) as out:
        assert out.uri_of("lora/w.safetensors") == "s3://bucket/runs/alice/out/lora/w.safetensors"
        assert out._remote("lora/w.safetensors") == "bucket/runs/alice/out/lora/w.safetensors"
