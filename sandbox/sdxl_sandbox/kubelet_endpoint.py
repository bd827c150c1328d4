"""The kubelet's HTTPS endpoint for container logs, served for the simulated nodes.

The API server answers ``GET pods/{name}/log`` (``kubectl logs``, the operator's progress reads) by
proxying to the pod's node: ``https://<InternalIP>:<kubeletEndpoint.Port>/containerLogs/{ns}/{pod}/{container}``.
This server is that endpoint for every simulated node. It serves the log file of the local process
that runs the pod, with the kubelet's query parameters: ``tailLines``, ``limitBytes``, ``follow`` and
``previous`` (one log per pod here: restarts append to it). The certificate is issued by the run's CA;
the API server does not verify it (no ``--kubelet-certificate-authority``), as kubeadm's default is.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from aiohttp import web

from sdxl_sandbox.certificates import KeyPair
from sdxl_sandbox.container_launch import LOOPBACK, free_port

FOLLOW_POLL_SECONDS = 0.25

# (namespace, pod) -> (log file, whether the process still runs), or None for a pod not run here.
LogLookup = Callable[[str, str], "tuple[Path, bool] | None"]


def _tail(text: str, lines: int) -> str:
    if lines <= 0:
        return ""
    kept = text.splitlines(keepends=True)[-lines:]
    return "".join(kept)


def make_app(lookup: LogLookup) -> web.Application:
    async def container_logs(request: web.Request) -> web.StreamResponse:
        namespace, pod = request.match_info["namespace"], request.match_info["pod"]
        found = lookup(namespace, pod)
        if found is None:
            raise web.HTTPNotFound(text=f"pod {namespace}/{pod} is not running on this node")
        log_file, _ = found
        text = log_file.read_text(encoding="utf-8", errors="replace") if log_file.exists() else ""
        if "tailLines" in request.query:
            text = _tail(text, int(request.query["tailLines"]))
        data = text.encode("utf-8")
        if "limitBytes" in request.query:
            data = data[:int(request.query["limitBytes"])]
        if request.query.get("follow") not in ("true", "1"):
            return web.Response(body=data, content_type="text/plain", charset="utf-8")
        response = web.StreamResponse(headers={"Content-Type": "text/plain; charset=utf-8"})
        await response.prepare(request)
        await response.write(data)
        offset = log_file.stat().st_size if log_file.exists() else 0
        while True:
            current = lookup(namespace, pod)
            if log_file.exists() and log_file.stat().st_size > offset:
                with log_file.open("rb") as handle:
                    handle.seek(offset)
                    chunk = handle.read()
                offset += len(chunk)
                await response.write(chunk)
            if current is None or not current[1]:
                break
            await asyncio.sleep(FOLLOW_POLL_SECONDS)
        await response.write_eof()
        return response

    app = web.Application()
    app.router.add_get("/containerLogs/{namespace}/{pod}/{container}", container_logs)
    return app


@contextlib.asynccontextmanager
async def serve_kubelet_endpoint(lookup: LogLookup, certificate: KeyPair) -> AsyncIterator[int]:
    """Serve the log endpoint on a free loopback port over HTTPS; yields the port."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(str(certificate.cert), str(certificate.key))
    runner = web.AppRunner(make_app(lookup), access_log=None)
    await runner.setup()
    port = free_port()
    site = web.TCPSite(runner, LOOPBACK, port, ssl_context=context)
    await site.start()
    try:
        yield port
    finally:
        await runner.cleanup()
