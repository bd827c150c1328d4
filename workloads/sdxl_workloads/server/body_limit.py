"""ASGI middleware refusing request bodies over a size limit with 413, before they are buffered.

A declared Content-Length over the limit is refused without reading the body; a body that
arrives without one (chunked) is counted as it streams and refused once it passes the limit.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from starlette.exceptions import HTTPException

Scope = dict[str, Any]


class BodySizeLimit:
    def __init__(self, app: Any, max_bytes: int, on_reject: Callable[[], None] | None = None) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.on_reject = on_reject

    def _message(self) -> str:
        return f"request body larger than the server's limit of {self.max_bytes} bytes"

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = None
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = None
        if declared is not None and declared > self.max_bytes:
            if self.on_reject is not None:
                self.on_reject()
            await self._refuse(send)
            return

        received = 0

        async def counting_receive() -> Any:
            nonlocal received
            message = await receive()
            if message.get("type") == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    if self.on_reject is not None:
                        self.on_reject()
                    # FastAPI re-raises HTTPExceptions from body reading; the app's handler answers.
                    raise HTTPException(status_code=413, detail=self._message())
            return message

        await self.app(scope, counting_receive, send)

    async def _refuse(self, send: Any) -> None:
        body = json.dumps({"detail": self._message(),
                           "error": {"type": "request_too_large", "message": self._message()}}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})
