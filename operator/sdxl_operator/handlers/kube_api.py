"""The few Kubernetes API calls the handlers make, as coroutines on one aiohttp session.

The session uses the credentials Kopf logged in with (:mod:`cluster_login`: in-cluster service
account, else the kubeconfig's current context), so the handlers' requests and Kopf's own watches
reach the same server as the same user. Requests and answers are plain JSON dicts: the handlers and
the pure status functions work on dicts, and the API server validates what it is sent.

Why not the official ``kubernetes`` client: it is blocking (each call needs a thread of a pool), and
importing it with its models costs the operator about 35 MB of its memory, for a dozen REST paths.

Every request is timed in the operator's metrics (:mod:`operator_metrics`), labelled with its verb
and kind (``create``, ``Job``; a subresource after a slash: ``SDXLDeployment/status``, ``Pod/log``).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from typing import Any

import aiohttp
import kopf

from sdxl_operator.handlers.metadata_only_watches import METADATA_LIST
from sdxl_operator.handlers.operator_metrics import KIND_OF_PLURAL, OperatorMetrics

# The kinds the controllers create, read, patch, delete or list: kind -> (API group/version path, plural).
_KINDS: dict[str, tuple[str, str]] = {
    "ConfigMap": ("api/v1", "configmaps"),
    "ServiceAccount": ("api/v1", "serviceaccounts"),
    "PersistentVolumeClaim": ("api/v1", "persistentvolumeclaims"),
    "Service": ("api/v1", "services"),
    "Job": ("apis/batch/v1", "jobs"),
    "Deployment": ("apis/apps/v1", "deployments"),
    "HorizontalPodAutoscaler": ("apis/autoscaling/v2", "horizontalpodautoscalers"),
    "NetworkPolicy": ("apis/networking.k8s.io/v1", "networkpolicies"),
    "PodDisruptionBudget": ("apis/policy/v1", "poddisruptionbudgets"),
    # Served by KEDA's CRD: on a cluster without it every call answers 404 (a read: None).
    "ScaledObject": ("apis/keda.sh/v1alpha1", "scaledobjects"),
}
# Listed and read only (pods by label, their logs; Events of a Job).
_READ_ONLY_KINDS: dict[str, tuple[str, str]] = {
    "Pod": ("api/v1", "pods"),
    "Event": ("api/v1", "events"),
}
MERGE_PATCH = "application/merge-patch+json"
# Kopf's own requests say "kopf/<version>": the API server's audit log tells the two apart.
USER_AGENT = "sdxl-operator/handlers"
# Connections kept to the API server: the handlers' concurrent requests beyond it wait for one.
DEFAULT_MAX_CONNECTIONS = 16

# (connect, read) seconds of every request. Without them a stalled connection (half-open TCP, a proxy
# that never answers) holds the status lock of the resource it refreshes forever; a timeout is an
# unreachable server like any other, which the refresh retries. The read timeout is per read of the
# answer, so a long listing that keeps arriving is not cut.
REQUEST_TIMEOUT: tuple[float, float] = (10.0, 60.0)


class KubeApiError(RuntimeError):
    """An API call failed with something other than the answers the caller handles.

    ``status``: the HTTP status of the answer; None when there was none (unreachable, timed out).
    """

    def __init__(self, message: str, status: int | None) -> None:
        super().__init__(message)
        self.status = status


class KubeApi:
    """Async access to the child kinds, Jobs and pods by label, pod logs and the custom resources."""

    def __init__(self, connection: kopf.ConnectionInfo, max_connections: int = DEFAULT_MAX_CONNECTIONS,
                 metrics: OperatorMetrics | None = None) -> None:
        self._connection = connection
        self._max_connections = max_connections
        self._metrics = metrics or OperatorMetrics()
        self._session: aiohttp.ClientSession | None = None
        self._retired: list[aiohttp.ClientSession] = []

    @classmethod
    def for_server(cls, url: str, max_connections: int = DEFAULT_MAX_CONNECTIONS,
                   metrics: OperatorMetrics | None = None) -> KubeApi:
        """A client for an API server at ``url`` that needs no credentials (the sandbox's emulator)."""
        return cls(kopf.ConnectionInfo(server=url, insecure=True), max_connections=max_connections, metrics=metrics)

    def use(self, connection: kopf.ConnectionInfo) -> None:
        """Send the next requests with ``connection``'s credentials (Kopf logged in again: a token expired).

        A new session (its TLS settings may differ); the old one is closed with this client, as
        requests may still be using it.
        """
        self._connection = connection
        if self._session is not None:
            self._retired.append(self._session)
            self._session = None

    async def close(self) -> None:
        for session in [*self._retired, *([self._session] if self._session else [])]:
            await session.close()
        self._retired.clear()
        self._session = None

    def _current_session(self) -> aiohttp.ClientSession:
        # Made on first use, inside the running event loop that aiohttp binds it to.
        if self._session is None:
            info = self._connection
            self._session = aiohttp.ClientSession(
                base_url=None,
                connector=aiohttp.TCPConnector(limit=self._max_connections, ssl=info.as_ssl_context()),
                headers={**info.as_http_headers(), "User-Agent": USER_AGENT},
                proxy=info.proxy_url,
                trust_env=info.trust_env,
                timeout=aiohttp.ClientTimeout(sock_connect=REQUEST_TIMEOUT[0], sock_read=REQUEST_TIMEOUT[1]),
            )
        return self._session

    async def _request(self, method: str, path: str, labels: tuple[str, str], *, what: str,
                       params: Mapping[str, Any] | None = None, body: Mapping[str, Any] | None = None,
                       content_type: str = "application/json", accept: str | None = None) -> bytes:
        """The body of a 2xx answer to ``method path``. Any other answer raises KubeApiError with its
        status and the server's message; no answer at all raises it with status None."""
        url = self._connection.server.rstrip("/") + "/" + path
        data = None if body is None else json.dumps(body)
        headers = {"Content-Type": content_type} if body is not None else {}
        if accept:
            headers["Accept"] = accept
        with self._metrics.api_request(*labels):
            try:
                async with self._current_session().request(
                    method, url, params={k: str(v) for k, v in (params or {}).items() if v is not None},
                    data=data, headers=headers,
                ) as response:
                    answer = await response.read()
                    status = response.status
                    reason = response.reason or ""
            except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
                # No HTTP answer at all (connection refused, reset, timed out): a temporary condition.
                raise KubeApiError(f"cannot reach the Kubernetes API server: {what}: "
                                   f"{type(exc).__name__}: {exc}", None) from exc
            if status >= 300:
                raise KubeApiError(f"{what}: {status} {reason}: {_message(answer)}", status)
        return answer

    async def _json(self, method: str, path: str, labels: tuple[str, str], *, what: str, **kwargs: Any) -> Any:
        return json.loads(await self._request(method, path, labels, what=what, **kwargs) or b"null")

    async def create(self, manifest: Mapping[str, Any]) -> bool:
        """Create a namespaced object; True if created, False if it already existed (HTTP 409)."""
        kind = str(manifest.get("kind"))
        namespace, name = manifest["metadata"]["namespace"], manifest["metadata"]["name"]
        try:
            # The answer (the created object) is not read beyond its status.
            await self._request("POST", _collection(kind, namespace), ("create", kind),
                                what=f"creating {kind} {namespace}/{name}", body=manifest)
        except KubeApiError as exc:
            if exc.status == 409:
                return False
            raise
        return True

    async def read(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        """A namespaced object of one of the child kinds, or None when it does not exist."""
        return await self._read_or_none(f"{_collection(kind, namespace)}/{name}", ("get", kind),
                                        f"reading {kind} {namespace}/{name}")

    async def _read_or_none(self, path: str, labels: tuple[str, str], what: str) -> dict[str, Any] | None:
        try:
            found: dict[str, Any] = await self._json("GET", path, labels, what=what)
        except KubeApiError as exc:
            if exc.status == 404:
                return None
            raise
        return found

    async def patch(self, kind: str, namespace: str, name: str, body: Mapping[str, Any]) -> None:
        """A JSON merge patch (RFC 7386): lists are replaced whole, None removes a key.

        Not a strategic merge: that merges lists such as volumes and env by name, so an entry the
        builder dropped (the API key volume when ``spec.auth`` goes away) would stay.
        """
        await self._request("PATCH", f"{_collection(kind, namespace)}/{name}", ("patch", kind),
                            what=f"patching {kind} {namespace}/{name}", body=body, content_type=MERGE_PATCH)

    async def delete(self, kind: str, namespace: str, name: str) -> bool:
        """Delete an object; False when it was not there."""
        try:
            await self._request("DELETE", f"{_collection(kind, namespace)}/{name}", ("delete", kind),
                                what=f"deleting {kind} {namespace}/{name}")
        except KubeApiError as exc:
            if exc.status == 404:
                return False
            raise
        return True

    async def list_jobs(self, namespace: str, label_selector: str) -> list[dict[str, Any]]:
        """Jobs matching ``label_selector``."""
        items, _ = await self.list_page("Job", namespace, label_selector)
        return items

    async def list_pods(self, namespace: str, label_selector: str) -> list[dict[str, Any]]:
        """Pods matching ``label_selector``."""
        items, _ = await self.list_page("Pod", namespace, label_selector)
        return items

    async def list_events(self, namespace: str, field_selector: str) -> list[dict[str, Any]]:
        """Core v1 Events matching ``field_selector`` (e.g. ``involvedObject.name=x,reason=FailedCreate``)."""
        listed = await self._json("GET", _collection("Event", namespace), ("list", "Event"),
                                  what=f"listing Events in {namespace} ({field_selector})",
                                  params={"fieldSelector": field_selector})
        return _items(listed)

    async def list_page(self, kind: str, namespace: str | None, label_selector: str, limit: int | None = None,
                        continue_token: str | None = None, *, metadata_only: bool = False
                        ) -> tuple[list[dict[str, Any]], str | None]:
        """One page of at most ``limit`` objects of a kind (or pods) matching ``label_selector``, in
        ``namespace`` or (None) every namespace, and the token of the next page (None after the last).
        ``metadata_only``: each object as ``PartialObjectMetadata`` (its metadata), as a metadata
        informer lists.

        Paged as an informer's relist is, so one LIST of thousands of objects is never one huge answer.
        """
        where = namespace or "every namespace"
        listed = await self._json("GET", _collection(kind, namespace), ("list", kind),
                                  what=f"listing {kind}s in {where} ({label_selector})",
                                  params={"labelSelector": label_selector, "limit": limit,
                                          "continue": continue_token or None},
                                  accept=METADATA_LIST if metadata_only else None)
        return _items(listed), (listed.get("metadata") or {}).get("continue") or None

    async def read_custom(self, group: str, version: str, plural: str, namespace: str, name: str
                          ) -> dict[str, Any] | None:
        """A namespaced custom resource, or None when it does not exist."""
        return await self._read_or_none(f"apis/{group}/{version}/namespaces/{namespace}/{plural}/{name}",
                                        ("get", KIND_OF_PLURAL.get(plural, plural)),
                                        f"reading {plural}.{group} {namespace}/{name}")

    async def list_custom(self, group: str, version: str, plural: str, namespace: str) -> list[dict[str, Any]]:
        """The custom resources of one kind in ``namespace``."""
        listed = await self._json("GET", f"apis/{group}/{version}/namespaces/{namespace}/{plural}",
                                  ("list", KIND_OF_PLURAL.get(plural, plural)),
                                  what=f"listing {plural}.{group} in {namespace}")
        return _items(listed)

    async def patch_custom_status(self, group: str, version: str, plural: str, namespace: str, name: str,
                                  body: Mapping[str, Any]) -> None:
        """A JSON merge patch of a custom resource's status subresource."""
        await self._request("PATCH", f"apis/{group}/{version}/namespaces/{namespace}/{plural}/{name}/status",
                            ("patch", KIND_OF_PLURAL.get(plural, plural) + "/status"),
                            what=f"patching the status of {plural}.{group} {namespace}/{name}",
                            body=body, content_type=MERGE_PATCH)

    async def read_cluster_custom(self, group: str, version: str, plural: str, name: str) -> dict[str, Any] | None:
        """A cluster-scoped custom resource, or None when it does not exist."""
        return await self._read_or_none(f"apis/{group}/{version}/{plural}/{name}", ("get", plural),
                                        f"reading {plural}.{group} {name}")

    async def read_pod_log_tail(self, namespace: str, name: str, container: str, lines: int) -> str | None:
        """The last ``lines`` lines of a container's log; None when there is none (yet, or any more)."""
        try:
            data = await self._request("GET", f"{_collection('Pod', namespace)}/{name}/log", ("get", "Pod/log"),
                                       what=f"reading the log of pod {namespace}/{name}",
                                       params={"container": container, "tailLines": lines})
        except KubeApiError as exc:
            if exc.status in (400, 404):  # container not started yet, or the pod is gone
                return None
            raise
        return data.decode("utf-8", errors="replace")


def _collection(kind: str, namespace: str | None) -> str:
    """The REST path of a kind's objects in ``namespace`` (None: in every namespace)."""
    if kind not in _KINDS and kind not in _READ_ONLY_KINDS:
        raise ValueError(f"no API calls for kind {kind!r}; add it to kube_api._KINDS")
    group_version, plural = _KINDS.get(kind) or _READ_ONLY_KINDS[kind]
    return f"{group_version}/{plural}" if namespace is None else f"{group_version}/namespaces/{namespace}/{plural}"


def _items(listed: Any) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = (listed or {}).get("items") or []
    return items


def _message(answer: bytes) -> str:
    """The ``message`` of a Kubernetes Status answer, else the answer's text."""
    try:
        body = json.loads(answer or b"{}")
    except ValueError:
        return answer.decode("utf-8", errors="replace")[:500]
    return str(body.get("message") or body) if isinstance(body, dict) else str(body)
