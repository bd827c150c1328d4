"""At most a few of Kopf's requests in flight at once, its watches aside.

Kopf's session has no connection limit (``limit=0``), because each of its watches holds a connection
for as long as it streams. So when 1,000 SDXLDeployments are created together, each of Kopf's
per-object workers patches its object (finalizer, progress, status) and posts its events at the same
moment, and every such request opens its own TLS connection: about a hundred at once were measured,
each with asyncio's 128 KiB read buffer and OpenSSL's state, plus a TLS handshake of CPU each. The
operator's peak memory was set by that burst.

The middleware here lets ``limit`` of those requests run at once and queues the rest; a watch
(``watch=true``) never waits, so the watches can never starve each other or the patches. A request
holds its place until its answer is read whole (Kopf reads every non-watch answer whole anyway), so
``limit`` bounds the connections busy with them, not only the requests sent.
"""

from __future__ import annotations

import asyncio

import aiohttp

# Kopf's concurrent patches and events beyond this wait their turn; the API server answers each in
# milliseconds, so this is ample for thousands of objects (and the handlers' own client has as many).
DEFAULT_KOPF_REQUESTS = 16


def is_watch(request: aiohttp.ClientRequest) -> bool:
    return request.method == "GET" and request.url.query.get("watch") in ("true", "1")


def bounded_requests_middleware(limit: int = DEFAULT_KOPF_REQUESTS) -> aiohttp.ClientMiddlewareType:
    """An aiohttp client middleware running at most ``limit`` requests other than watches at once."""
    if limit < 1:
        raise ValueError(f"the limit of concurrent requests must be at least 1, got {limit}")
    # Created lazily: an asyncio primitive belongs to the loop it is first used in.
    slots: list[asyncio.Semaphore] = []

    async def bounded(request: aiohttp.ClientRequest, handler: aiohttp.ClientHandlerType) -> aiohttp.ClientResponse:
        if is_watch(request):
            return await handler(request)
        if not slots:
            slots.append(asyncio.Semaphore(limit))
        async with slots[0]:
            response = await handler(request)
            try:
                await response.read()  # kept by the response: the caller's read() and json() get it
            finally:
                response.release()
            return response

    return bounded
