"""Calling a served model: ``POST /v1/generate`` and the PNGs it returns, saved to a folder."""

from __future__ import annotations

import base64
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import aiohttp

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


class GenerateError(Exception):
    """The server answered with an error or something that is not PNG images."""


async def generate_images(base_url: str, prompt: str, *, num_images: int = 2, seed: int = 0,
                          timeout_seconds: float = 300.0, extra: Mapping[str, Any] | None = None) -> list[bytes]:
    """The PNG files the server at ``base_url`` makes for ``prompt``."""
    body = {"prompt": prompt, "num_images": num_images, "seed": seed, **(extra or {})}
    timeout = aiohttp.ClientTimeout(total=timeout_seconds)
    async with aiohttp.ClientSession(timeout=timeout) as session, \
            session.post(f"{base_url.rstrip('/')}/v1/generate", json=body) as response:
        payload = await response.json(content_type=None)
        if response.status != 200:
            raise GenerateError(f"POST {base_url}/v1/generate: HTTP {response.status}: {payload}")
    images = [base64.b64decode(item) for item in payload.get("images") or []]
    if not images or not all(image.startswith(PNG_SIGNATURE) for image in images):
        raise GenerateError(f"POST {base_url}/v1/generate returned no PNG images")
    return images


def save_images(images: list[bytes], folder: Path, stem: str) -> list[Path]:
    """Write ``<folder>/<stem>-<n>.png`` for each image; returns the paths."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index, image in enumerate(images, start=1):
        path = folder / f"{stem}-{index}.png"
        path.write_bytes(image)
        paths.append(path)
    return paths


async def served_adapters(base_url: str, *, timeout_seconds: float = 30.0) -> list[str]:
    """The adapters the server at ``base_url`` serves now (``GET /v1/adapters``)."""
    timeout = aiohttp.ClientTimeout(total=timeout_seconds)
    async with aiohttp.ClientSession(timeout=timeout) as session, \
            session.get(f"{base_url.rstrip('/')}/v1/adapters") as response:
        payload = await response.json(content_type=None)
        if response.status != 200:
            raise GenerateError(f"GET {base_url}/v1/adapters: HTTP {response.status}: {payload}")
    return [str(name) for name in payload.get("adapters") or []]
