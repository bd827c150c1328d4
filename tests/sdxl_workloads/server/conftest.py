"""Fixtures of the server tests.

``serving``: serves the FastAPI app in-process (its lifespan: the model loads) and yields an httpx
client to it, ``async with serving(app) as client``. ``metric``: one sample of the Prometheus text a
``/metrics`` answer holds, by name and labels (fails the test when the server does not export it).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families


@contextlib.asynccontextmanager
async def _serving(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    async with app.router.lifespan_context(app), httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://server", timeout=120) as client:
        yield client


def _metric(text: str, name: str, **labels: str) -> float:
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    raise AssertionError(f"metric {name} {labels} not exported")


@pytest.fixture
def serving() -> Callable[[Any], contextlib.AbstractAsyncContextManager[httpx.AsyncClient]]:
    return _serving


@pytest.fixture
def metric() -> Callable[..., float]:
    return _metric
