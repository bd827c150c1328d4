"""The few Kubernetes API calls the handlers make, as coroutines.

Built on the official ``kubernetes`` client (the same one Kopf's login uses, so the operator finds
the cluster the way kubectl does: in-cluster service account, else kubeconfig). The client is
blocking, so each call runs in a thread pool of its own, sized with the client's connection pool;
responses are read as plain JSON dicts (``_preload_content=False``) because the handlers and the
pure status functions work on dicts.

Request bodies are plain manifest dicts; the client validates them against its models (client v37
uses pydantic: unknown fields are refused and quantities must be strings).

Every request is timed in the operator's metrics (:mod:`operator_metrics`), labelled with the verb and
kind read off the client method it calls (``create_namespaced_job``: create, Job).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import json
import os
from collections.abc import Callable, Mapping
from typing import Any

import kubernetes
import urllib3

from sdxl_operator.handlers.operator_metrics import KIND_OF_PLURAL, OperatorMetrics

# The child kinds the controllers create, read, patch and delete.
# kind -> (API class, method suffix): create_namespaced_<suffix>, read_namespaced_<suffix>, ...
_KINDS: dict[str, tuple[str, str]] = {
    "ConfigMap": ("CoreV1Api", "config_map"),
    "ServiceAccount": ("CoreV1Api", "service_account"),
    "PersistentVolumeClaim": ("CoreV1Api", "persistent_volume_claim"),
    "Service": ("CoreV1Api", "service"),
    "Job": ("BatchV1Api", "job"),
    "Deployment": ("AppsV1Api", "deployment"),
    "HorizontalPodAutoscaler": ("AutoscalingV2Api", "horizontal_pod_autoscaler"),
    "NetworkPolicy": ("NetworkingV1Api", "network_policy"),
    "PodDisruptionBudget": ("PolicyV1Api", "pod_disruption_budget"),
}
# Child kinds served by a CRD of another project: kind -> (group, version, plural). The same four calls go
# through the custom objects API; on a cluster without that CRD a read answers None (404).
_CUSTOM_KINDS: dict[str, tuple[str, str, str]] = {
    "ScaledObject": ("keda.sh", "v1alpha1", "scaledobjects"),
}
MERGE_PATCH = "application/merge-patch+json"


# (connect, read) seconds of every request. Without them a stalled connection (half-open TCP, a proxy
# that never answers) holds an API thread, and the status lock of the resource it refreshes, forever;
# a timeout is an unreachable server like any other, which the refresh retries. The read timeout is
# per read of the answer, so a long listing that keeps arriving is not cut.
REQUEST_TIMEOUT: tuple[float, float] = (10.0, 60.0)


class KubeApiError(RuntimeError):
    """An API call failed with something other than the answers the caller handles."""

    def __init__(self, message: str, status: int | None) -> None:
        super().__init__(message)
        self.status = status


def load_configuration() -> kubernetes.client.Configuration:
    """In-cluster configuration when running in a pod, else the current kubeconfig context.

    ``$KUBECONFIG`` is read now, not when the client library was imported.
    """
    configuration = kubernetes.client.Configuration()
    try:
        kubernetes.config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    except kubernetes.config.ConfigException:
        kubernetes.config.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=os.environ.get("KUBECONFIG") or None, client_configuration=configuration
        )
    return configuration


class KubeApi:
    """Async access to the child kinds, Jobs and pods by label, pod logs and the custom resources."""

    def __init__(self, configuration: kubernetes.client.Configuration, max_workers: int = 16,
                 metrics: OperatorMetrics | None = None) -> None:
        configuration.connection_pool_maxsize = max_workers
        self._metrics = metrics or OperatorMetrics()
        self._client = kubernetes.client.ApiClient(configuration)
        self._executor = concurrent.futures.ThreadPoolExecutor(max_workers, thread_name_prefix="kube-api")
        self._core = kubernetes.client.CoreV1Api(self._client)
        self._batch = kubernetes.client.BatchV1Api(self._client)

    @classmethod
    def from_environment(cls, max_workers: int = 16, metrics: OperatorMetrics | None = None) -> KubeApi:
        return cls(load_configuration(), max_workers=max_workers, metrics=metrics)

    @classmethod
    def for_server(cls, url: str, max_workers: int = 16, metrics: OperatorMetrics | None = None) -> KubeApi:
        """A client for an API server at ``url`` that needs no credentials (the sandbox's emulator)."""
        configuration = kubernetes.client.Configuration()
        configuration.host = url
        return cls(configuration, max_workers=max_workers, metrics=metrics)

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
        self._client.close()  # type: ignore[no-untyped-call]

    async def _run(self, call: Callable[..., Any]) -> bytes:
        """The raw body of a call made with ``_preload_content=False``, its connection back in the pool.

        Reading the whole body and releasing the connection is what ``_preload_content=True`` would do
        (less the deserialization into client models, which is most of the CPU time). A response left
        unread holds its connection: the API server sees the request aborted mid-answer, and the
        pool opens new connections and discards them ("Connection pool is full").
        """
        loop = asyncio.get_running_loop()

        def send() -> bytes:
            response = call(_request_timeout=REQUEST_TIMEOUT)
            try:
                return bytes(response.data or b"")
            finally:
                response.release_conn()

        try:
            with self._metrics.api_request(*request_labels(call)):
                return await loop.run_in_executor(self._executor, send)
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            # No HTTP answer at all (connection refused, reset, timeout): a temporary condition.
            raise KubeApiError(f"cannot reach the Kubernetes API server: {exc}", None) from exc

    async def _json(self, method: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return json.loads(await self._run(functools.partial(method, *args, _preload_content=False, **kwargs))
                          or b"null")

    async def create(self, manifest: Mapping[str, Any]) -> bool:
        """Create a namespaced object; True if created, False if it already existed (HTTP 409)."""
        kind = str(manifest.get("kind"))
        create = self._kind_method(kind, "create")
        namespace = manifest["metadata"]["namespace"]
        try:
            # The answer is not read: skipping its deserialization into client models saves most of the
            # call's CPU time when hundreds of children are created at once.
            await self._run(functools.partial(create, namespace, dict(manifest), _preload_content=False))
        except kubernetes.client.ApiException as exc:
            if exc.status == 409:
                return False
            raise KubeApiError(f"creating {kind} {namespace}/{manifest['metadata']['name']}: {exc.reason}: "
                               f"{_message(exc)}", exc.status) from exc
        return True

    def _kind_method(self, kind: str, verb: str) -> Callable[..., Any]:
        if kind in _CUSTOM_KINDS:
            return self._custom_kind_method(kind, verb)
        if kind not in _KINDS:
            raise ValueError(f"no API calls for kind {kind!r}; add it to kube_api._KINDS or _CUSTOM_KINDS")
        api_class, suffix = _KINDS[kind]
        return getattr(getattr(kubernetes.client, api_class)(self._client), f"{verb}_namespaced_{suffix}")  # type: ignore[no-any-return]

    def _custom_kind_method(self, kind: str, verb: str) -> Callable[..., Any]:
        """A custom-objects call with the typed methods' arguments: (namespace, body) for create, else
        (name, namespace[, body])."""
        group, version, plural = _CUSTOM_KINDS[kind]
        api = kubernetes.client.CustomObjectsApi(self._client)
        if verb == "create":
            return lambda namespace, body, **kw: api.create_namespaced_custom_object(
                group, version, namespace, plural, body, **kw)
        method = getattr(api, {"read": "get", "patch": "patch", "delete": "delete"}[verb] + "_namespaced_custom_object")
        return lambda name, namespace, *body, **kw: method(group, version, namespace, plural, name, *body, **kw)

    async def read(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        """A namespaced object of one of the child kinds, or None when it does not exist."""
        return await self._read_or_none(f"{kind} {namespace}/{name}", self._kind_method(kind, "read"), name, namespace)

    async def _read_or_none(self, what: str, method: Callable[..., Any], *args: Any) -> dict[str, Any] | None:
        try:
            found: dict[str, Any] = await self._json(method, *args)
        except kubernetes.client.ApiException as exc:
            if exc.status == 404:
                return None
            raise KubeApiError(f"reading {what}: {exc.reason}", exc.status) from exc
        return found

    async def patch(self, kind: str, namespace: str, name: str, body: Mapping[str, Any]) -> None:
        """A JSON merge patch (RFC 7386): lists are replaced whole, None removes a key.

        Not a strategic merge: that merges lists such as volumes and env by name, so an entry the
        builder dropped (the API key volume when ``spec.auth`` goes away) would stay.
        """
        call = functools.partial(self._kind_method(kind, "patch"), name, namespace, dict(body),
                                 _content_type=MERGE_PATCH, _preload_content=False)
        try:
            await self._run(call)
        except kubernetes.client.ApiException as exc:
            raise KubeApiError(f"patching {kind} {namespace}/{name}: {exc.reason}: {_message(exc)}",
                               exc.status) from exc

    async def delete(self, kind: str, namespace: str, name: str) -> bool:
        """Delete an object; False when it was not there."""
        try:
            await self._run(functools.partial(self._kind_method(kind, "delete"), name, namespace,
                                              _preload_content=False))
        except kubernetes.client.ApiException as exc:
            if exc.status == 404:
                return False
            raise KubeApiError(f"deleting {kind} {namespace}/{name}: {exc.reason}", exc.status) from exc
        return True

    async def list_jobs(self, namespace: str, label_selector: str) -> list[dict[str, Any]]:
        """Jobs matching ``label_selector``."""
        return await self._list("Jobs", self._batch.list_namespaced_job, namespace, label_selector)

    async def list_events(self, namespace: str, field_selector: str) -> list[dict[str, Any]]:
        """Core v1 Events matching ``field_selector`` (e.g. ``involvedObject.name=x,reason=FailedCreate``)."""
        try:
            listed = await self._json(self._core.list_namespaced_event, namespace, field_selector=field_selector)
        except kubernetes.client.ApiException as exc:
            raise KubeApiError(f"listing Events in {namespace} ({field_selector}): {exc.reason}", exc.status) from exc
        items: list[dict[str, Any]] = listed.get("items") or []
        return items

    async def read_custom(self, group: str, version: str, plural: str, namespace: str, name: str
                          ) -> dict[str, Any] | None:
        """A namespaced custom resource, or None when it does not exist."""
        api = kubernetes.client.CustomObjectsApi(self._client)
        return await self._read_or_none(f"{plural}.{group} {namespace}/{name}", api.get_namespaced_custom_object,
                                        group, version, namespace, plural, name)

    async def list_custom(self, group: str, version: str, plural: str, namespace: str) -> list[dict[str, Any]]:
        """The custom resources of one kind in ``namespace``."""
        api = kubernetes.client.CustomObjectsApi(self._client)
        try:
            listed = await self._json(api.list_namespaced_custom_object, group, version, namespace, plural)
        except kubernetes.client.ApiException as exc:
            raise KubeApiError(f"listing {plural}.{group} in {namespace}: {exc.reason}", exc.status) from exc
        items: list[dict[str, Any]] = listed.get("items") or []
        return items

    async def patch_custom_status(self, group: str, version: str, plural: str, namespace: str, name: str,
                                  body: Mapping[str, Any]) -> None:
        """A JSON merge patch of a custom resource's status subresource."""
        api = kubernetes.client.CustomObjectsApi(self._client)
        call = functools.partial(api.patch_namespaced_custom_object_status, group, version, namespace, plural, name,
                                 dict(body), _content_type=MERGE_PATCH, _preload_content=False)
        try:
            await self._run(call)
        except kubernetes.client.ApiException as exc:
            raise KubeApiError(f"patching the status of {plural}.{group} {namespace}/{name}: {exc.reason}: "
                               f"{_message(exc)}", exc.status) from exc

    async def list_pods(self, namespace: str, label_selector: str) -> list[dict[str, Any]]:
        """Pods matching ``label_selector``."""
        return await self._list("pods", self._core.list_namespaced_pod, namespace, label_selector)

    async def _list(self, what: str, method: Callable[..., Any], namespace: str, label_selector: str
                    ) -> list[dict[str, Any]]:
        try:
            listed = await self._json(method, namespace, label_selector=label_selector)
        except kubernetes.client.ApiException as exc:
            raise KubeApiError(f"listing {what} in {namespace} ({label_selector}): {exc.reason}", exc.status) from exc
        items: list[dict[str, Any]] = listed.get("items") or []
        return items

    async def list_page(self, kind: str, namespace: str | None, label_selector: str, limit: int,
                        continue_token: str | None = None) -> tuple[list[dict[str, Any]], str | None]:
        """One page of at most ``limit`` objects of a child kind (or pods) matching ``label_selector``, in
        ``namespace`` or (None) every namespace, and the token of the next page (None after the last).

        Paged as an informer's relist is, so one LIST of thousands of objects is never one huge answer.
        """
        api_class, suffix = {**_KINDS, "Pod": ("CoreV1Api", "pod")}[kind]
        api = getattr(kubernetes.client, api_class)(self._client)
        paging: dict[str, Any] = {"label_selector": label_selector, "limit": limit}
        if continue_token:
            paging["_continue"] = continue_token
        where = namespace or "every namespace"
        try:
            if namespace is None:
                listed = await self._json(getattr(api, f"list_{suffix}_for_all_namespaces"), **paging)
            else:
                listed = await self._json(getattr(api, f"list_namespaced_{suffix}"), namespace, **paging)
        except kubernetes.client.ApiException as exc:
            raise KubeApiError(f"listing {kind}s in {where} ({label_selector}): {exc.reason}", exc.status) from exc
        items: list[dict[str, Any]] = listed.get("items") or []
        return items, (listed.get("metadata") or {}).get("continue") or None

    async def read_cluster_custom(self, group: str, version: str, plural: str, name: str) -> dict[str, Any] | None:
        """A cluster-scoped custom resource, or None when it does not exist."""
        api = kubernetes.client.CustomObjectsApi(self._client)
        return await self._read_or_none(f"{plural}.{group} {name}", api.get_cluster_custom_object,
                                        group, version, plural, name)

    async def read_pod_log_tail(self, namespace: str, name: str, container: str, lines: int) -> str | None:
        """The last ``lines`` lines of a container's log; None when there is none (yet, or any more)."""
        call = functools.partial(
            self._core.read_namespaced_pod_log, name, namespace, container=container, tail_lines=lines,
            _preload_content=False,
        )
        try:
            data = await self._run(call)
        except kubernetes.client.ApiException as exc:
            if exc.status in (400, 404):  # container not started yet, or the pod is gone
                return None
            raise KubeApiError(f"reading the log of pod {namespace}/{name}: {exc.reason}", exc.status) from exc
        return data.decode("utf-8", errors="replace")


def request_labels(call: Callable[[], Any]) -> tuple[str, str]:
    """(verb, kind) of a request: ``partial(api.create_namespaced_job, ...)`` is (create, Job).

    Custom objects are named by their plural (``sdxlfinetunes``, our kinds by name), a status or log
    subresource after a slash. A call not made through a named client method is (call, unknown).
    """
    method = call.func if isinstance(call, functools.partial) else call
    name = getattr(method, "__name__", "")
    if name == "get_cluster_custom_object":  # (group, version, plural, name)
        args = call.args if isinstance(call, functools.partial) else ()
        return "get", str(args[2]) if len(args) > 2 else "custom_object"
    if name.startswith("list_") and name.endswith("_for_all_namespaces"):  # list_job_for_all_namespaces
        return "list", "".join(part.capitalize() for part in name[len("list_"):-len("_for_all_namespaces")].split("_"))
    verb, _, suffix = name.partition("_namespaced_")
    if not suffix:
        return "call", "unknown"
    verb = {"read": "get"}.get(verb, verb)
    if suffix.startswith("custom_object"):
        args = call.args if isinstance(call, functools.partial) else ()
        plural = str(args[3]) if len(args) > 3 else "custom_object"
        kind = KIND_OF_PLURAL.get(plural, plural)
        return verb, kind + ("/status" if suffix.endswith("_status") else "")
    log = suffix.endswith("_log")
    kind = "".join(part.capitalize() for part in (suffix[:-len("_log")] if log else suffix).split("_"))
    return verb, kind + ("/log" if log else "")


def _message(exc: kubernetes.client.ApiException) -> str:
    try:
        body = json.loads(exc.body or "{}")
    except (TypeError, ValueError):
        return str(exc.body or "")
    return str(body.get("message") or exc.body or "") if isinstance(body, dict) else str(body)
