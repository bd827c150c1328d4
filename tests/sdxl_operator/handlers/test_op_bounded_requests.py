"""Kopf's requests other than watches run a few at a time; its watches never wait. Over real HTTP
against a small server that counts the requests it is answering at once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import aiohttp
import kopf
import pytest
import pytest_asyncio
from aiohttp import web

from sdxl_operator.handlers.bounded_requests import DEFAULT_KOPF_REQUESTS, bounded_requests_middleware
from sdxl_operator.handlers.child_watch import CHILD_RESOURCES
from sdxl_operator.handlers.metadata_only_watches import kopf_session

pytestmark = pytest.mark.asyncio


@dataclass
class SlowServer:
    """Answers each request after ``delay`` seconds; a watch streams until the test ends."""

    url: str = ""
    delay: float = 0.05
    busy: int = 0
    most_busy: int = 0
    watching: int = 0
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if request.query.get("watch") == "true":
            self.watching += 1
            response = web.StreamResponse()
            await response.prepare(request)
            await response.write(b'{"type": "ADDED", "object": {}}\n')
            await self.stop.wait()
            return response
        self.busy += 1
        self.most_busy = max(self.most_busy, self.busy)
        try:
            await asyncio.sleep(self.delay)
            return web.json_response({"path": request.path, "padding": "x" * 100_000})
        finally:
            self.busy -= 1


@pytest_asyncio.fixture
async def slow_server() -> AsyncIterator[SlowServer]:
    state = SlowServer()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", state.handle)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    state.url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"  # type: ignore[union-attr]
    yield state
    state.stop.set()
    await runner.cleanup()


async def fetch(session: aiohttp.ClientSession, url: str) -> object:
    async with session.patch(url, json={"status": {}}) as response:
        return await response.json()


async def test_at_most_the_limit_of_requests_runs_at_once_and_every_answer_arrives_whole(
        slow_server: SlowServer) -> None:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0),
                                     middlewares=(bounded_requests_middleware(4),)) as session:
        answers = await asyncio.gather(*(fetch(session, f"{slow_server.url}/obj/{i}") for i in range(30)))
    assert slow_server.most_busy == 4
    assert [answer["path"] for answer in answers] == [f"/obj/{i}" for i in range(30)]  # type: ignore[index]
    assert all(len(answer["padding"]) == 100_000 for answer in answers)  # type: ignore[index]


async def test_watches_never_wait_for_a_place(slow_server: SlowServer) -> None:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0),
                                     middlewares=(bounded_requests_middleware(2),)) as session:
        watches = [await session.get(f"{slow_server.url}/api/v1/pods?watch=true") for _ in range(5)]
        try:
            # More watches streaming than there are places, and a patch still goes through at once.
            assert slow_server.watching == 5
            answer = await asyncio.wait_for(fetch(session, f"{slow_server.url}/obj/a"), timeout=5)
            assert answer["path"] == "/obj/a"  # type: ignore[index]
            first = await watches[0].content.readline()
            assert b"ADDED" in first
        finally:
            for watch in watches:
                watch.close()


async def test_kopfs_session_is_bounded(slow_server: SlowServer) -> None:
    context = kopf_session(kopf.ConnectionInfo(server=slow_server.url), metadata_only=CHILD_RESOURCES)
    try:
        await asyncio.gather(*(fetch(context.aiohttp_session, f"{slow_server.url}/obj/{i}")
                               for i in range(3 * DEFAULT_KOPF_REQUESTS)))
    finally:
        await context.aiohttp_session.close()
    assert slow_server.most_busy == DEFAULT_KOPF_REQUESTS


async def test_a_limit_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 1, got 0"):
        bounded_requests_middleware(0)
