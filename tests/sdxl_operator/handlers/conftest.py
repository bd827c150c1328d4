"""Fixtures of the handlers tests.

``server``: an API server stand-in over real HTTP for the client tests, a small aiohttp app that
records each request (method, path, query, headers, body) and answers each path as told (200 with
an empty list by default).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest_asyncio
from aiohttp import web


@dataclass
class Recorder:
    """The requests the server saw, and the answer (status, JSON body) of each path."""

    url: str = ""
    seen: list[dict[str, Any]] = field(default_factory=list)
    answers: dict[str, tuple[int, Any]] = field(default_factory=dict)

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.seen.append({"method": request.method, "path": request.path, "query": dict(request.query),
                          "content_type": request.headers.get("Content-Type"),
                          "authorization": request.headers.get("Authorization"),
                          "user_agent": request.headers.get("User-Agent"),
                          "accept": request.headers.get("Accept"),
                          "body": json.loads(body) if body else None})
        status, answer = self.answers.get(request.path, (200, {"items": [], "metadata": {}}))
        if isinstance(answer, str):
            return web.Response(status=status, text=answer)
        return web.json_response(answer, status=status)


@pytest_asyncio.fixture
async def server() -> AsyncIterator[Recorder]:
    recorder = Recorder()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", recorder.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    recorder.url = f"http://127.0.0.1:{port}"
    yield recorder
    await runner.cleanup()
