"""A minimal Kubernetes API client over aiohttp, for the parts of the sandbox that play cluster components.

The local executor talks to the API server the way kubelet and the controllers do (over HTTP, never
by reaching into the emulator's memory), so it would work against any API server.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import aiohttp

from sdxl_sandbox.kubeconfig import Credentials, read_kubeconfig, ssl_context

CORE_KINDS = {"Pod": "pods", "Service": "services", "ConfigMap": "configmaps", "Secret": "secrets",
              "PersistentVolumeClaim": "persistentvolumeclaims", "PersistentVolume": "persistentvolumes",
              "Namespace": "namespaces", "Node": "nodes", "ResourceQuota": "resourcequotas"}


class ApiError(Exception):
    """The API server refused a request."""

    def __init__(self, method: str, path: str, status: int, body: object) -> None:
        message = body.get("message") if isinstance(body, dict) else body
        super().__init__(f"{method} {path}: HTTP {status}: {message}")
        self.status = status


def collection_path(api_version: str, plural: str, namespace: str | None) -> str:
    """``/api/v1/namespaces/ns/pods`` or ``/apis/group/version/...``; cluster-wide without a namespace."""
    base = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
    return f"{base}/namespaces/{namespace}/{plural}" if namespace else f"{base}/{plural}"


def plural_of(kind: str) -> str:
    """The resource name of a kind (the usual English rule; core exceptions listed)."""
    if kind in CORE_KINDS:
        return CORE_KINDS[kind]
    lower = kind.lower()
    return lower + ("es" if lower.endswith("s") else "s")


def object_path(obj: Mapping[str, Any]) -> str:
    meta = obj.get("metadata") or {}
    return collection_path(str(obj["apiVersion"]), plural_of(str(obj["kind"])), meta.get("namespace")) + \
        f"/{meta['name']}"


class KubeClient:
    """GET/POST/PATCH/DELETE against one API server."""

    def __init__(self, server_url: str, *, credentials: Credentials | None = None) -> None:
        self.server_url = server_url.rstrip("/")
        self._token = credentials.token if credentials is not None else None
        tls = ssl_context(credentials) if credentials is not None else None
        # A fresh connection per request: the emulator's keep-alive handling is not worth relying on.
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(force_close=True, ssl=tls if tls is not None else True),
            timeout=aiohttp.ClientTimeout(total=30))

    @classmethod
    def from_kubeconfig(cls, path: Path) -> KubeClient:
        """A client with the server and credentials of a kubeconfig the sandbox wrote."""
        credentials = read_kubeconfig(path)
        return cls(credentials.server, credentials=credentials)

    async def close(self) -> None:
        await self._session.close()

    async def request(self, method: str, path: str, body: object = None,
                      content_type: str = "application/json") -> Any:
        headers = {"Content-Type": content_type, "User-Agent": "sdxl-sandbox/executor"}
        if self._token is not None:
            headers["Authorization"] = f"Bearer {self._token}"
        async with self._session.request(method, self.server_url + path, json=body, headers=headers) as response:
            text = await response.text()
            try:
                payload = json.loads(text) if text else None
            except ValueError:  # plain-text answers: /readyz, pod logs
                payload = text
            if response.status >= 300:
                raise ApiError(method, path, response.status, payload)
            return payload

    async def list(self, api_version: str, plural: str, namespace: str | None = None) -> list[dict[str, Any]]:
        payload = await self.request("GET", collection_path(api_version, plural, namespace))
        items = list(payload.get("items") or [])
        # A real API server leaves apiVersion and kind off list items; the callers address objects by them.
        kind = str(payload.get("kind") or "").removesuffix("List")
        for item in items:
            item.setdefault("apiVersion", api_version)
            if kind:
                item.setdefault("kind", kind)
        return items

    async def get(self, api_version: str, plural: str, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            found: dict[str, Any] = await self.request(
                "GET", f"{collection_path(api_version, plural, namespace)}/{name}")
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise
        return found

    async def create(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        meta = obj.get("metadata") or {}
        path = collection_path(str(obj["apiVersion"]), plural_of(str(obj["kind"])), meta.get("namespace"))
        created: dict[str, Any] = await self.request("POST", path, dict(obj))
        return created

    async def patch_status(self, obj: Mapping[str, Any], status: Mapping[str, Any]) -> None:
        await self.request("PATCH", object_path(obj) + "/status", {"status": dict(status)},
                           content_type="application/merge-patch+json")

    async def patch(self, obj: Mapping[str, Any], changes: Mapping[str, Any]) -> dict[str, Any]:
        """A JSON merge patch of ``obj``."""
        patched: dict[str, Any] = await self.request("PATCH", object_path(obj), dict(changes),
                                                     content_type="application/merge-patch+json")
        return patched

    async def delete(self, obj: Mapping[str, Any]) -> None:
        try:
            await self.request("DELETE", object_path(obj))
        except ApiError as exc:
            if exc.status != 404:
                raise
