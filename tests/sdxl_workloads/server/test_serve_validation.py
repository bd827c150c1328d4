"""Every invalid request gets 422 (or 413 for an oversized body) naming the field, and the API
key check: table-driven, against the real tiny model so valid requests really generate."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from sdxl_workloads.protocol import WorkloadError
from sdxl_workloads.server.app import create_app
from sdxl_workloads.server.auth import key_matches, presented_key, read_api_key
from sdxl_workloads.server.model import ServedModel
from sdxl_workloads.server.settings import ServerSettings

pytestmark = pytest.mark.compat

SETTINGS = ServerSettings(default_steps=1, max_steps=20, max_images=4, max_body_bytes=4096)
OK = {"prompt": "a photo of sks person"}


@contextlib.asynccontextmanager
async def serving(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    async with app.router.lifespan_context(app), httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://server", timeout=60) as client:
        yield client


def post_all(model: ServedModel, settings: ServerSettings, requests: list[dict[str, Any]]) -> list[httpx.Response]:
    async def scenario() -> list[httpx.Response]:
        async with serving(create_app(model, settings)) as client:
            return [await client.request("POST", **request) for request in requests]

    return asyncio.run(scenario())


GENERATE_CASES = [
    # (body, the field the error must name)
    ({}, "prompt"),
    ({"prompt": ""}, "prompt"),
    ({"prompt": "   "}, "prompt"),
    ({"prompt": "x" * 2001}, "prompt"),
    ({"prompt": 123}, "prompt"),
    ({**OK, "negative_prompt": "x" * 2001}, "negative_prompt"),
    ({**OK, "num_inference_steps": 0}, "num_inference_steps"),
    ({**OK, "num_inference_steps": 21}, "num_inference_steps"),  # over this server's --max-steps
    ({**OK, "num_inference_steps": 2.5}, "num_inference_steps"),
    ({**OK, "guidance_scale": -0.5}, "guidance_scale"),
    ({**OK, "guidance_scale": 31}, "guidance_scale"),
    ({**OK, "guidance_scale": "strong"}, "guidance_scale"),
    ({**OK, "seed": -1}, "seed"),
    ({**OK, "seed": 2**32}, "seed"),
    ({**OK, "width": 30}, "width"),
    ({**OK, "height": 0}, "height"),
    ({**OK, "width": 4096}, "width"),
    ({**OK, "width": 512}, "width"),  # a multiple of 8 the schema allows, too large for this model
    ({**OK, "height": 8}, "height"),  # too small for this model
    ({**OK, "num_images": 0}, "num_images"),
    ({**OK, "num_images": 5}, "num_images"),  # over this server's --max-images
    ({**OK, "steps": 5}, "steps"),  # misspelt field: refused rather than silently ignored
]


@pytest.mark.parametrize(("body", "field"), GENERATE_CASES, ids=[f"{f}-{i}" for i, (_, f) in enumerate(GENERATE_CASES)])
def test_invalid_generate_request_is_422_naming_the_field(loaded_model: ServedModel, body: dict[str, Any],
                                                          field: str) -> None:
    (response,) = post_all(loaded_model, SETTINGS, [{"url": "/v1/generate", "json": body}])
    assert response.status_code == 422, response.text
    payload = response.json()
    assert payload["error"]["message"].startswith(f"{field}:"), payload
    assert any(error["loc"][-1] == field for error in payload["detail"]), payload


OPENAI_CASES = [
    ({"n": 1}, "prompt"),
    ({**OK, "n": 0}, "n"),
    ({**OK, "n": 5}, "n"),
    ({**OK, "size": "big"}, "size"),
    ({**OK, "size": "64x60"}, "size"),
    ({**OK, "size": "4096x4096"}, "size"),
    ({**OK, "size": "256x256"}, "size"),  # well-formed, too large for the tiny model
    ({**OK, "response_format": "url"}, "response_format"),
]


@pytest.mark.parametrize(("body", "field"), OPENAI_CASES, ids=[f"{f}-{i}" for i, (_, f) in enumerate(OPENAI_CASES)])
def test_invalid_openai_request_is_422_naming_the_field(loaded_model: ServedModel, body: dict[str, Any],
                                                        field: str) -> None:
    (response,) = post_all(loaded_model, SETTINGS, [{"url": "/v1/images/generations", "json": body}])
    assert response.status_code == 422, response.text
    assert response.json()["error"]["message"].startswith(f"{field}:"), response.json()


RAW_CASES = [
    (b'{"prompt": "a photo', "application/json"),  # truncated JSON
    (b"not json at all", "application/json"),
    (b'["a photo"]', "application/json"),  # valid JSON, wrong shape
    (b'{"prompt": "a", "guidance_scale": NaN}', "application/json"),  # Python's json accepts NaN
    (b'{"prompt": "a", "guidance_scale": Infinity}', "application/json"),
    (b'{"prompt": "a"}', "text/plain"),
    (b"", "application/json"),
]


@pytest.mark.parametrize(("content", "content_type"), RAW_CASES)
def test_malformed_bodies_are_422(loaded_model: ServedModel, content: bytes, content_type: str) -> None:
    (response,) = post_all(loaded_model, SETTINGS, [
        {"url": "/v1/generate", "content": content, "headers": {"content-type": content_type}}])
    assert response.status_code == 422, response.text
    assert response.json()["error"]["message"]


def test_oversized_bodies_are_413_whether_declared_or_streamed(loaded_model: ServedModel) -> None:
    big = b'{"prompt": "' + b"x" * 8000 + b'"}'

    def chunks() -> Any:
        async def gen() -> AsyncIterator[bytes]:
            for start in range(0, len(big), 1000):
                yield big[start:start + 1000]
        return gen()

    async def scenario() -> list[httpx.Response]:
        async with serving(create_app(loaded_model, SETTINGS)) as client:
            declared = await client.post("/v1/generate", content=big, headers={"content-type": "application/json"})
            streamed = await client.post("/v1/generate", content=chunks(), headers={"content-type": "application/json"})
            after = await client.post("/v1/generate", json=OK)
            metrics = (await client.get("/metrics")).text
            return [declared, streamed, after, metrics]

    declared, streamed, after, metrics = asyncio.run(scenario())
    assert declared.status_code == 413 and "4096 bytes" in declared.json()["error"]["message"]
    assert streamed.status_code == 413 and "4096 bytes" in streamed.json()["error"]["message"]
    assert after.status_code == 200
    assert 'sdxl_requests_rejected_total{reason="too_large"} 2.0' in metrics


KEY = "s3cret-key-123"
AUTH_CASES = [
    ({}, 401),
    ({"Authorization": f"Bearer {KEY}"}, 200),
    ({"authorization": f"bearer {KEY}"}, 200),
    ({"X-API-Key": KEY}, 200),
    ({"Authorization": "Bearer wrong"}, 401),
    ({"X-API-Key": KEY + "x"}, 401),
    ({"Authorization": f"Basic {KEY}"}, 401),
    ({"Authorization": KEY}, 401),
    ({"Authorization": "Bearer "}, 401),
]


@pytest.mark.parametrize(("headers", "status"), AUTH_CASES)
def test_api_key_is_required_on_the_generation_endpoints(loaded_model: ServedModel, headers: dict[str, str],
                                                        status: int) -> None:
    settings = ServerSettings(default_steps=1, api_key=KEY)
    generate, openai = post_all(loaded_model, settings, [
        {"url": "/v1/generate", "json": OK, "headers": headers},
        {"url": "/v1/images/generations", "json": OK, "headers": headers}])
    assert generate.status_code == status, generate.text
    assert openai.status_code == status, openai.text
    if status == 401:
        assert generate.headers["www-authenticate"] == "Bearer"
        assert "API key" in generate.json()["error"]["message"]


def test_probes_metrics_and_docs_need_no_key(loaded_model: ServedModel) -> None:
    async def scenario() -> list[int]:
        async with serving(create_app(loaded_model, ServerSettings(api_key=KEY))) as client:
            return [(await client.get(path)).status_code for path in ("/healthz", "/readyz", "/metrics", "/docs")]

    assert asyncio.run(scenario()) == [200, 200, 200, 200]


def test_key_helpers(tmp_path: Path) -> None:
    key_file = tmp_path / "api-key"
    key_file.write_text(f"  {KEY}\n")
    assert read_api_key(key_file) == KEY
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(WorkloadError, match="empty"):
        read_api_key(tmp_path / "empty")
    with pytest.raises(WorkloadError, match="cannot read"):
        read_api_key(tmp_path / "absent")
    assert presented_key(None, None) is None
    assert presented_key("Bearer abc", None) == "abc"
    assert presented_key("Bearer abc", "xyz") == "xyz"
    assert key_matches(KEY, KEY) and not key_matches(KEY, None) and not key_matches(KEY, "é")


@pytest.mark.parametrize("overrides", [
    {"max_batch": 0}, {"queue_size": 0}, {"request_timeout": 0}, {"max_steps": 151},
    {"default_steps": 30, "max_steps": 20}, {"max_images": 9}, {"api_key": ""}])
def test_bad_settings_are_refused(overrides: dict[str, Any]) -> None:
    field = next(iter(overrides)) if "default_steps" not in overrides else "default_steps"
    with pytest.raises(ValueError, match=field):
        ServerSettings(**overrides)
