"""Kopf's watches of the children ask the API server for their metadata only.

A child's event only tells the operator *which* owner to refresh (:mod:`child_watch` reads its kind,
name, labels, uid and resourceVersion); the refresh then reads the objects it needs. Yet a watch
sends each changed object whole: a pod with its spec and status is several kilobytes of JSON, parsed
into tens of kilobytes of Python objects, for each of thousands of events when 1,000 deployments
start or the operator restarts. That burst set the operator's peak memory.

So the session Kopf is given (a ``kopf.AiohttpSession``, Kopf's documented way to bring one's own)
asks for ``PartialObjectMetadata`` on the LISTs and WATCHes of the child kinds, as client-go's
metadata informers do: the API server then sends ``{"kind": "PartialObjectMetadata", "metadata":
{...}}`` per object. Every other request of Kopf (the custom resources, peering, events) goes out
unchanged. The session's TLS, credentials and proxy are those of the login, exactly as Kopf would
set them up itself, and its requests other than watches run a few at a time (:mod:`bounded_requests`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

import aiohttp
import kopf

from sdxl_operator.handlers.bounded_requests import bounded_requests_middleware

# As client-go's metadata client asks (JSON only: the operator does not speak protobuf); a server
# without the metadata conversion answers plain JSON, which the handlers read just as well.
METADATA_LIST = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json"
METADATA_OBJECT = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1,application/json"


def collection_paths(resources: Iterable[tuple[str, str, str]]) -> re.Pattern[str]:
    """The URL paths of the collections of ``(group, version, plural)``, cluster-wide or in a namespace."""
    alternatives = []
    for group, version, plural in resources:
        prefix = f"/api/{version}" if not group else f"/apis/{re.escape(group)}/{version}"
        alternatives.append(f"{prefix}(?:/namespaces/[^/]+)?/{plural}")
    return re.compile(f"^(?:{'|'.join(alternatives)})$")


def metadata_only_middleware(resources: Iterable[tuple[str, str, str]]) -> aiohttp.ClientMiddlewareType:
    """An aiohttp client middleware that asks for metadata only on LIST and WATCH of ``resources``."""
    paths = collection_paths(resources)

    async def metadata_only(request: aiohttp.ClientRequest, handler: aiohttp.ClientHandlerType
                            ) -> aiohttp.ClientResponse:
        if request.method == "GET" and paths.match(request.url.path):
            watching = request.url.query.get("watch") in ("true", "1")
            request.headers["Accept"] = METADATA_OBJECT if watching else METADATA_LIST
        return await handler(request)

    return metadata_only


class _ListResponse(aiohttp.ClientResponse):
    """A response whose JSON has ``"items": []`` where the API server wrote ``"items": null``.

    The API server encodes an empty ``PartialObjectMetadataList`` with ``null`` items (Go's nil slice),
    which Kopf's listing iterates over; a full list of the same objects has ``[]``.
    """

    async def json(self, *args: Any, **kwargs: Any) -> Any:
        data = await super().json(*args, **kwargs)
        if isinstance(data, dict) and "items" in data and data["items"] is None:
            data["items"] = []
        return data


def kopf_session(connection: kopf.ConnectionInfo, metadata_only: Iterable[tuple[str, str, str]]
                 ) -> kopf.AiohttpSession:
    """What the login hands Kopf: a session with ``connection``'s server, TLS and credentials that
    watches ``metadata_only`` resources' metadata only. Made inside the running event loop."""
    session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0, ssl=connection.as_ssl_context()),
        headers={**connection.as_http_headers(), "User-Agent": f"kopf/{_kopf_version()}"},
        proxy=connection.proxy_url,
        trust_env=connection.trust_env,
        # A watch holds its connection while it streams: the connections are not limited, the
        # requests other than watches are (the middleware).
        middlewares=(bounded_requests_middleware(), metadata_only_middleware(metadata_only)),
        response_class=_ListResponse,
    )
    return kopf.AiohttpSession(server=connection.server, default_namespace=connection.default_namespace,
                               priority=connection.priority, expiration=connection.expiration,
                               aiohttp_session=session)


def _kopf_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("kopf")
    except PackageNotFoundError:
        return "unknown"
