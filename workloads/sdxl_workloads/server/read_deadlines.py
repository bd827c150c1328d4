"""How long a client may take to send its request: headers and body each within a deadline.

A client that opens connections and sends its request a byte at a time (slowloris) would
otherwise hold a connection, and the memory behind it, without limit: uvicorn bounds only the
idle time between requests (`timeout_keep_alive`), not a request's own arrival.

- Headers: `HeaderDeadlineH11Protocol`, uvicorn's h11 protocol with one more timer, armed when a
  connection opens and after each response, and disarmed when a request's headers are complete.
  It closes a connection whose headers have not all arrived in time.
- Body: `BodyReadDeadline`, an ASGI middleware; the whole body must arrive within the deadline
  from the moment its headers did, else 408 with `Connection: close`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

import h11
from starlette.exceptions import HTTPException
from uvicorn.protocols.http.h11_impl import H11Protocol

from sdxl_workloads.server.settings import DEFAULT_HEADER_TIMEOUT


class HeaderDeadlineH11Protocol(H11Protocol):
    """uvicorn's h11 protocol, closing connections whose request headers take too long.

    Subclass per server with `with_header_timeout`; uvicorn builds one instance per connection.
    """

    header_timeout: float = DEFAULT_HEADER_TIMEOUT
    _header_deadline: asyncio.TimerHandle | None = None

    @classmethod
    def with_header_timeout(cls, seconds: float) -> type[HeaderDeadlineH11Protocol]:
        return type("HeaderDeadlineH11Protocol", (cls,), {"header_timeout": float(seconds)})

    def _in_request(self) -> bool:
        """Whether a request's headers have arrived and its response is not finished."""
        return self.cycle is not None and not self.cycle.response_complete

    def _arm(self) -> None:
        self._disarm()
        if not self._in_request() and not self.transport.is_closing():
            self._header_deadline = self.loop.call_later(self.header_timeout, self._headers_too_slow)

    def _disarm(self) -> None:
        if self._header_deadline is not None:
            self._header_deadline.cancel()
            self._header_deadline = None

    def _headers_too_slow(self) -> None:
        self._header_deadline = None
        if self._in_request() or self.transport.is_closing():
            return
        # As uvicorn's own keep-alive timeout does: no response (there is no request to answer).
        with contextlib.suppress(h11.LocalProtocolError):
            self.conn.send(h11.ConnectionClosed())
        self.transport.close()

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        self._arm()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self._in_request():
            self._disarm()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        # The next request on this kept-alive connection gets the same deadline (a pipelined one
        # already parsed is in request, and _arm leaves it alone).
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)


class BodyReadDeadline:
    """ASGI middleware: the request body must be complete within `timeout` seconds of its headers."""

    def __init__(self, app: Any, timeout: float, on_timeout: Callable[[], None] | None = None) -> None:
        self.app = app
        self.timeout = timeout
        self.on_timeout = on_timeout

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout
        body_done = False

        async def timed_receive() -> Any:
            nonlocal body_done
            if body_done:  # later receives wait for a disconnect: no deadline on those
                return await receive()
            try:
                message = await asyncio.wait_for(receive(), max(0.0, deadline - loop.time()))
            except asyncio.TimeoutError:
                if self.on_timeout is not None:
                    self.on_timeout()
                # FastAPI re-raises HTTPExceptions from body reading; the app's handler answers, and
                # `Connection: close` makes uvicorn drop the connection with the unread rest.
                raise HTTPException(
                    status_code=408,
                    detail=f"the request body did not arrive within {self.timeout:g} s; send it at once",
                    headers={"Connection": "close"}) from None
            if message.get("type") != "http.request" or not message.get("more_body", False):
                body_done = True
            return message

        await self.app(scope, timed_receive, send)
