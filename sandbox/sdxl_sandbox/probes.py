"""Readiness as kubelet judges it: an ``httpGet`` probe on the container's (locally mapped) port.

Only ``httpGet`` probes are emulated (the only kind the operator writes); a container without a
readiness probe is ready once running, as in Kubernetes. A probe is due every ``periodSeconds``
(capped at a second here, so the sandbox notices readiness quickly) and succeeds on any 2xx/3xx.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import aiohttp

from sdxl_sandbox.container_launch import LOOPBACK

MAX_PERIOD_SECONDS = 1.0


class ReadinessProbe:
    """The readiness probe of one running container."""

    def __init__(self, probe: Mapping[str, Any] | None, ports: Mapping[str, int]) -> None:
        self._probe = probe
        self._ports = ports
        self._next = 0.0
        self.ready = probe is None

    def url(self) -> str | None:
        if self._probe is None or "httpGet" not in self._probe:
            return None
        get = self._probe["httpGet"]
        port = self._ports.get(str(get.get("port")))
        if port is None:
            return None
        return f"http://{LOOPBACK}:{port}{get.get('path') or '/'}"

    async def check(self, session: aiohttp.ClientSession) -> bool:
        """Probe when due; returns the current readiness."""
        if self._probe is None:
            return True
        now = time.monotonic()
        if now < self._next:
            return self.ready
        period = float(self._probe.get("periodSeconds") or 10)
        self._next = now + min(period, MAX_PERIOD_SECONDS)
        url = self.url()
        if url is None:  # e.g. an exec or tcpSocket probe: not emulated, treat as passing
            self.ready = True
            return True
        timeout = aiohttp.ClientTimeout(total=float(self._probe.get("timeoutSeconds") or 1))
        try:
            async with session.get(url, timeout=timeout) as response:
                self.ready = 200 <= response.status < 400
        except (aiohttp.ClientError, TimeoutError, OSError):
            self.ready = False
        return self.ready
