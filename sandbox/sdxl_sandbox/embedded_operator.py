"""The real operator running inside the caller's event loop, pointed at a given API server.

For the sandbox and the tests: the same registry ``sdxl-operator run`` uses, cluster-wide and
standalone, started and stopped around a block::

    async with serve_emulator() as (emulator, url), embedded_operator(url, settings):
        ...
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import kopf

from sdxl_operator.operator_registry import build_registry
from sdxl_operator.settings import OperatorSettings

START_TIMEOUT_SECONDS = 30.0
STOP_TIMEOUT_SECONDS = 30.0


@contextlib.asynccontextmanager
async def embedded_operator(api_server: str, settings: OperatorSettings) -> AsyncIterator[None]:
    """Run the operator against ``api_server`` for the duration of the block."""
    stop = asyncio.Event()
    ready = asyncio.Event()
    task = asyncio.create_task(kopf.operator(
        registry=build_registry(settings, api_server=api_server), settings=kopf.OperatorSettings(),
        clusterwide=True, standalone=True, stop_flag=stop, ready_flag=ready,
    ), name="sdxl-operator")
    readiness = asyncio.create_task(ready.wait())
    await asyncio.wait({task, readiness}, timeout=START_TIMEOUT_SECONDS, return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        readiness.cancel()
        task.result()  # raises what stopped the operator
        raise RuntimeError("the operator stopped while starting")
    if not ready.is_set():
        readiness.cancel()
        stop.set()
        raise TimeoutError(f"the operator did not start within {START_TIMEOUT_SECONDS:.0f}s")
    try:
        yield
    finally:
        stop.set()
        await asyncio.wait_for(task, STOP_TIMEOUT_SECONDS)
