"""A Kubernetes API emulator the real operator can run against: KMock's ``KubernetesEmulator``, extended.

Used by the local sandbox, the integration tests and the scale benchmark (there is no kube-apiserver
to be had on a development machine). KMock stores objects and serves list/get/create/patch/delete/
watch over real HTTP; it deliberately leaves out server behaviour. Each extension below adds back
one behaviour the operator (or Kopf) depends on, and nothing more:

* **Server-set metadata on create** — ``uid`` (Kopf keys its per-object memory by it and
  ownerReferences point to it), ``resourceVersion``, ``generation`` (``observedGeneration`` is
  compared with it), ``creationTimestamp``, and the namespace from the URL (clients may omit it).
* **resourceVersion/generation on patch** — every change gets a new ``resourceVersion``; a change of
  ``spec`` bumps ``generation``, as for custom resources with a status subresource.
* **422 for a failed JSON-patch ``test``** — Kopf guards its finalizer patches with
  ``test /metadata/resourceVersion`` and treats 422 as "newer changes, retry"; KMock answers 500.
* **Label selectors on list and watch** — the operator lists a Job's pods by label.
* **Lossless watches from a resourceVersion** — KMock loses changes made between its snapshot and
  its subscription, and replays everything; Kopf then waits forever on a stale object.
* **Garbage collection by ownerReferences** — deleting an owner deletes its dependents (recursively,
  like the background cascade ``kubectl delete`` uses), so deleting a custom resource removes its Job.
* **Pod logs** — ``GET .../pods/<name>/log`` (with ``tailLines``) serves text set by whoever plays
  the kubelet (:meth:`KubeEmulator.set_pod_log`); KMock would return the pod object instead.
* **List kind/apiVersion** — ``kind: <Kind>List`` on lists, which ``kubectl get`` requires.
* **Discovery as kubectl reads it** — KMock copies short names and categories onto the
  ``<plural>/status`` entries (a real server does not; ``kubectl get sdxl`` then fails with
  ``the server doesn't have a resource type "sdxlfinetunes/status"``) and names the core group
  ``/v1`` instead of ``v1`` (kubectl then resolves ``pods`` to ``metrics.k8s.io`` PodMetrics).
* **Metadata only (``as=PartialObjectMetadata``)** — the operator's child watches and resync ask for
  ``PartialObjectMetadataList`` on a list and ``PartialObjectMetadata`` on a watch, as client-go's
  metadata informers do; the emulator answers with each object's ``metadata`` only, as the API server does.
* **Server-side printing (``as=Table``)** — ``kubectl get`` asks for a ``meta.k8s.io/v1`` Table; for
  the SDXL resources the emulator answers one built from the CRDs' ``additionalPrinterColumns``
  (simple ``.a.b[0].c`` JSONPaths; ``date`` columns rendered as an age), so kubectl shows PHASE,
  STEP, LOSS, … instead of only NAME and AGE. Other resources, and watches, stay plain JSON (kubectl
  then prints what it can).
* **No request log** — KMock records every request and scans that record to route each new one,
  so the n-th request costs O(n); only the requests in flight are kept (``emulator.requests``
  assertions are not available).

Not emulated: printer columns on watches (``kubectl get -w``), ``GET /api/v1/namespaces`` (KMock's path parser fails on it), so run the operator with
``--all-namespaces``, or with exact namespaces and Kopf's scanning disabled; server-side validation,
defaulting, pruning and CEL rules.

Import this module only where kmock is installed (a development dependency).
"""

from __future__ import annotations

import collections
import contextlib
import copy
import datetime
import re
import uuid
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import aiohttp.web
import attrs
import jsonpatch
import kmock
import yaml
from kmock._internal import dicts as kmock_dicts  # the same patch semantics KMock applies
from kmock._internal import rendering

from sdxl_sandbox.label_selectors import matches_selector, parse_selector


@attrs.define(kw_only=True)
class KubeEmulator(kmock.KubernetesEmulator):
    """KMock's emulator with the server behaviours the operator relies on (see the module docstring)."""

    _pod_logs: dict[tuple[str | None, str], str] = attrs.field(factory=dict, init=False)
    _last_version: int = attrs.field(default=0, init=False)
    # (user agent, verb, API group, resource[/subresource]) -> count: what each client did, for RBAC checks.
    audit: collections.Counter[tuple[str, str, str, str]] = attrs.field(factory=collections.Counter, init=False)
    # (API group, plural) -> the CRD's additionalPrinterColumns, for ``as=Table`` answers.
    printer_columns: dict[tuple[str, str], list[dict[str, Any]]] = attrs.field(factory=dict, init=False)

    # ----- public helpers for whoever plays the kubelet / controllers -----

    def set_pod_log(self, namespace: str, name: str, text: str) -> None:
        """Replace the log of pod ``namespace/name``."""
        self._pod_logs[(namespace, name)] = text

    def append_pod_log(self, namespace: str, name: str, text: str) -> None:
        """Append ``text`` to the log of pod ``namespace/name``."""
        self._pod_logs[(namespace, name)] = self._pod_logs.get((namespace, name), "") + text

    def live_objects(self, resource: str, namespace: str | None = None) -> list[dict[str, Any]]:
        """The current (not deleted) objects of ``resource`` (e.g. ``batch/v1/jobs``), as plain dicts."""
        wanted = kmock.resource(resource)
        found: list[dict[str, Any]] = []
        for (res, ns, _name), obj in list(self.objects.items()):
            if res == wanted and (namespace is None or ns == namespace) and not obj.deleted:
                found.append(copy.deepcopy(obj.raw))
        return found

    def live_object(self, resource: str, namespace: str, name: str) -> dict[str, Any] | None:
        """One current object as a plain dict, or None when absent or deleted."""
        for obj in self.live_objects(resource, namespace):
            if obj.get("metadata", {}).get("name") == name:
                return obj
        return None

    # ----- the extensions -----

    def _next_version(self) -> str:
        self._last_version += 1
        return str(self._last_version)

    async def _handle(self, request: rendering.Request) -> aiohttp.web.StreamResponse:
        self._record(request)
        try:
            return await self._handle_request(request)
        finally:
            self._forget(request)

    def _record(self, request: rendering.Request) -> None:
        if request.resource is None or request.resource.plural is None:
            return  # discovery
        method = str(getattr(request.method, "value", request.method)).upper()
        if method == "GET":
            verb = "watch" if request.params.get("watch") in ("true", "1") else "get" if request.name else "list"
        else:
            verb = {"POST": "create", "PATCH": "patch", "PUT": "update", "DELETE": "delete"}.get(method, method.lower())
        resource = request.resource.plural + (f"/{request.subresource}" if request.subresource else "")
        agent = request.headers.get("User-Agent", "")
        self.audit[(agent, verb, str(request.resource.group or ""), resource)] += 1

    def _forget(self, request: rendering.Request) -> None:
        # KMock logs every request forever and matches each new request by scanning that whole log
        # (request in reaction), so the n-th request costs O(n): minutes for a few thousand. The
        # emulator keeps only the requests still being served.
        for log in (self._requests, *(payload._requests for payload in self._payloads)):
            for index in range(len(log) - 1, -1, -1):
                if log[index] is request:
                    del log[index]
                    break

    async def _handle_request(self, request: rendering.Request) -> aiohttp.web.StreamResponse:
        if request.resource is None:
            return await super()._handle(request)
        deleting_uid: str | None = None
        target: tuple[Any, str | None, str] | None = None
        if request.action == kmock.action.CREATE and isinstance(request.data, dict):
            self._stamp_new_object(request)
        elif request.action == kmock.action.UPDATE and request.name is not None:
            current = self._current(request.resource, request.namespace, request.name)
            if current is not None:
                self._stamp_patch(request, current)
                target = (request.resource, request.namespace, request.name)
                deleting_uid = current.get("metadata", {}).get("uid")
        elif request.action == kmock.action.DELETE and request.name is not None:
            current = self._current(request.resource, request.namespace, request.name)
            if current is not None:
                target = (request.resource, request.namespace, request.name)
                deleting_uid = current.get("metadata", {}).get("uid")

        response = await super()._handle(request)

        # The owner is gone for good (deleted now, or its last finalizer was just removed): collect.
        if target is not None and deleting_uid and self._current(*target) is None:
            await self._collect_dependents(deleting_uid)
        return response

    def _current(self, resource: Any, namespace: str | None, name: str) -> dict[str, Any] | None:
        key = (resource, namespace, name)
        if key not in self.objects or self.objects[key].deleted:
            return None
        raw: dict[str, Any] = self.objects[key].raw
        return raw

    def _stamp_new_object(self, request: rendering.Request) -> None:
        data: dict[str, Any] = request.data
        meta = data.setdefault("metadata", {})
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = f"{meta['generateName']}{uuid.uuid4().hex[:5]}"
        if request.namespace and not meta.get("namespace"):
            meta["namespace"] = request.namespace
        meta["uid"] = str(uuid.uuid4())
        meta["resourceVersion"] = self._next_version()
        meta["generation"] = 1
        meta["creationTimestamp"] = _now()

    def _stamp_patch(self, request: rendering.Request, current: dict[str, Any]) -> None:
        patch = request.data
        if isinstance(patch, list):
            try:
                patched = jsonpatch.apply_patch(current, patch, in_place=False)
            except jsonpatch.JsonPatchTestFailed as exc:
                raise kmock.KubernetesError(status=422, reason="Invalid", message=str(exc)) from exc
            except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException):
                return  # let KMock report it the way it does
        elif isinstance(patch, dict):
            wanted_version = patch.get("metadata", {}).get("resourceVersion")
            if wanted_version and wanted_version != current.get("metadata", {}).get("resourceVersion"):
                raise kmock.KubernetesError(
                    status=409, reason="Conflict",
                    message="the object has been modified; please apply your changes to the latest version",
                )
            patched = dict(kmock_dicts.patch_dict(current, patch))
        else:
            return
        meta_changes: dict[str, Any] = {"resourceVersion": self._next_version()}
        generation = int(current.get("metadata", {}).get("generation") or 1)
        if patched.get("spec") != current.get("spec"):
            meta_changes["generation"] = generation + 1
        if isinstance(patch, list):
            patch.extend({"op": "add", "path": f"/metadata/{key}", "value": value} for key, value in meta_changes.items())
        else:
            patch.setdefault("metadata", {}).update(meta_changes)

    async def _collect_dependents(self, owner_uid: str) -> None:
        gone: list[str] = []
        async with self._lock:
            for key, obj in list(self.objects.items()):
                if obj.deleted:
                    continue
                raw = obj.raw
                refs = raw.get("metadata", {}).get("ownerReferences") or []
                if not any(ref.get("uid") == owner_uid for ref in refs):
                    continue
                resource = key[0]
                if raw.get("metadata", {}).get("finalizers"):
                    if not raw["metadata"].get("deletionTimestamp"):
                        obj.patch({"metadata": {"deletionTimestamp": _now()}})
                        await self._buses[resource].put({"type": "MODIFIED", "object": obj.raw})
                    continue
                obj.delete()
                await self._buses[resource].put({"type": "DELETED", "object": raw})
                if raw.get("metadata", {}).get("uid"):
                    gone.append(raw["metadata"]["uid"])
        for uid in gone:
            await self._collect_dependents(uid)

    async def _serve_version(self, request: rendering.Request) -> rendering.Payload:
        payload = await super()._serve_version(request)
        # A real server lists short names and categories on the resource only, never on its
        # subresources; kubectl would otherwise expand ``sdxl`` to ``sdxlfinetunes/status`` too.
        # And it calls the core group version ``v1``, which kubectl needs to find ``pods`` there.
        if isinstance(payload, dict):
            if str(payload.get("groupVersion", "")).startswith("/"):
                payload["groupVersion"] = payload["groupVersion"][1:]  # the core group is "v1", not "/v1"
            for entry in payload.get("resources", []):
                if "/" in str(entry.get("name", "")):
                    entry.pop("shortNames", None)
                    entry.pop("categories", None)
        return payload

    def _table_columns(self, request: rendering.Request) -> list[dict[str, Any]] | None:
        """The printer columns when the client asked for a Table of a resource that declares them."""
        if request.resource is None or request.subresource is not None:
            return None
        accept = next((value for key, value in request.headers.items() if key.lower() == "accept"), "")
        if "as=Table" not in accept or "g=meta.k8s.io" not in accept:
            return None
        return self.printer_columns.get((str(request.resource.group or ""), str(request.resource.plural)))

    async def _serve_list(self, request: rendering.Request) -> rendering.Payload:
        payload = await self._serve_plain_list(request)
        columns = self._table_columns(request)
        if columns is not None and isinstance(payload, dict):
            return _table(columns, payload["items"], payload["metadata"], request.params.get("includeObject"))
        if _asks_for(request, "PartialObjectMetadataList") and isinstance(payload, dict):
            # An empty one has items null, as the API server encodes it (Go's nil slice).
            return {"kind": "PartialObjectMetadataList", "apiVersion": "meta.k8s.io/v1",
                    "metadata": payload["metadata"],
                    "items": [_metadata_only(item) for item in payload["items"]] or None}
        return payload

    async def _serve_plain_list(self, request: rendering.Request) -> rendering.Payload:
        payload = await super()._serve_list(request)
        assert isinstance(payload, dict)  # KMock's list is always a dict
        requirements = parse_selector(request.params.get("labelSelector", ""))
        if requirements:
            payload["items"] = [item for item in payload["items"] if matches_selector(_labels(item), requirements)]
        payload["metadata"] = {"resourceVersion": str(self._last_version)}
        if request.resource is not None:
            kind = self._kind_of(request.resource)
            group, version = request.resource.group, request.resource.version
            payload["apiVersion"] = f"{group}/{version}" if group else str(version)
            if kind:
                payload["kind"] = f"{kind}List"
        return payload

    def _kind_of(self, resource: Any) -> str | None:
        with contextlib.suppress(Exception):
            info = self.resources[resource]
            return str(info.kind) if info.kind else None
        return None

    async def _serve_watch(self, request: rendering.Request) -> AsyncIterator[rendering.Payload]:
        # KMock snapshots the objects and only then subscribes to its event bus, so a change made in
        # between is lost and a client (Kopf) may wait forever on a stale object. Subscribe first, then
        # snapshot: a change in between is sent twice at worst. Like the API server, skip what the
        # client has already seen (resourceVersion from its list) and honour label selectors.
        yield b""
        assert request.resource is not None  # a watch is always on a resource
        requirements = parse_selector(request.params.get("labelSelector", ""))
        seen_version = _version_number(request.params.get("resourceVersion"))
        bus = self._buses[request.resource]
        marker = await bus.mark()
        try:
            async with self._lock:
                snapshot = [
                    obj.raw for (resource, _ns, _name), obj in list(self.objects.items())
                    if resource == request.resource and not obj.deleted
                ]
            metadata_only = _asks_for(request, "PartialObjectMetadata")
            for raw in snapshot:
                event = {"type": "ADDED", "object": raw}
                if self._wanted(request, event, requirements, seen_version):
                    yield _event_as_metadata(event) if metadata_only else event
            async for event in bus.stream(since=marker):
                if self._wanted(request, event, requirements, seen_version):
                    yield _event_as_metadata(event) if metadata_only else event
        finally:
            await bus.unmark(marker)

    @staticmethod
    def _wanted(
        request: rendering.Request, event: Mapping[str, Any], requirements: list[Any], seen_version: int | None
    ) -> bool:
        meta = event.get("object", {}).get("metadata", {})
        if request.namespace is not None and meta.get("namespace") != request.namespace:
            return False
        if request.name is not None and meta.get("name") != request.name:
            return False
        if requirements and not matches_selector(meta.get("labels") or {}, requirements):
            return False
        version = _version_number(meta.get("resourceVersion"))
        return not (event.get("type") != "DELETED" and seen_version is not None and version is not None
                    and version <= seen_version)

    # KMock finds the object of a get/create/patch/delete by scanning every stored object; with a
    # few thousand objects that dominates each request. These look it up by its key instead.

    def _stored(self, request: rendering.Request, name: str | None = None) -> Any:
        namespace = request.namespace
        if isinstance(request.data, dict) and request.action == kmock.action.CREATE:
            meta = request.data.get("metadata", {})
            namespace = namespace or meta.get("namespace")
            name = name or meta.get("name")
        key: Any = (request.resource, namespace, name or request.name)
        if key not in self.objects:
            raise kmock.KubernetesObjectNotFoundError()
        return self.objects[key]

    async def _serve_fetch(self, request: rendering.Request) -> rendering.Payload:
        async with self._lock:
            obj = self._stored(request)
            if obj.deleted:
                raise kmock.KubernetesObjectNotFoundError()
            raw: dict[str, Any] = obj.raw
        if request.subresource == "log" and request.resource is not None and request.resource.plural == "pods":
            text = self._pod_logs.get((request.namespace, str(request.name)), "")
            tail = request.params.get("tailLines")
            if tail is not None and tail.isdigit():
                lines = text.splitlines(keepends=True)
                text = "".join(lines[-int(tail):]) if int(tail) > 0 else ""
            # The real API server answers text/plain, as clients expect of a log.
            return rendering.Response(payload=text.encode("utf-8"), headers={"Content-Type": "text/plain"})
        columns = self._table_columns(request)
        if columns is not None:
            return _table(columns, [raw], {"resourceVersion": str(self._last_version)},
                          request.params.get("includeObject"))
        return raw

    async def _serve_create(self, request: rendering.Request) -> rendering.Payload:
        async with self._lock:
            raw: dict[str, Any] = self._stored(request).last.raw
        return raw

    async def _serve_update(self, request: rendering.Request) -> rendering.Payload:
        async with self._lock:
            raw: dict[str, Any] = self._stored(request).last.raw
        return raw

    async def _serve_delete(self, request: rendering.Request) -> rendering.Payload:
        async with self._lock:
            raw: dict[str, Any] = self._stored(request).last.raw
        return raw


def _asks_for(request: rendering.Request, as_kind: str) -> bool:
    """Whether the Accept header's first choice is ``as=<as_kind>;g=meta.k8s.io`` (a metadata informer)."""
    accept = next((value for key, value in request.headers.items() if key.lower() == "accept"), "")
    first = accept.split(",")[0]
    return f"as={as_kind};" in first + ";" and "g=meta.k8s.io" in first


def _metadata_only(obj: Mapping[str, Any]) -> dict[str, Any]:
    return {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": obj.get("metadata") or {}}


def _event_as_metadata(event: Mapping[str, Any]) -> dict[str, Any]:
    return {**event, "object": _metadata_only(event.get("object") or {})}


def _version_number(value: object) -> int | None:
    return int(value) if isinstance(value, str) and value.isdigit() else None


def _labels(obj: Mapping[str, Any]) -> Mapping[str, str]:
    labels = obj.get("metadata", {}).get("labels") or {}
    return labels if isinstance(labels, Mapping) else {}


_NAME_COLUMN = {
    "name": "Name", "type": "string", "format": "name", "priority": 0,
    "description": "Name must be unique within a namespace.",
}


def _table(
    columns: list[dict[str, Any]], items: list[dict[str, Any]], list_meta: dict[str, Any], include_object: str | None
) -> dict[str, Any]:
    """A ``meta.k8s.io/v1`` Table as the API server renders one for a custom resource."""
    definitions = [_NAME_COLUMN] + [
        {"name": column["name"], "type": column.get("type", "string"), "format": column.get("format", ""),
         "description": column.get("description", ""), "priority": int(column.get("priority", 0))}
        for column in columns
    ]
    rows: list[dict[str, Any]] = []
    for item in items:
        meta = item.get("metadata", {})
        cells: list[Any] = [meta.get("name")]
        for column in columns:
            value = _json_path(item, str(column.get("jsonPath", "")))
            if column.get("type") == "date" and isinstance(value, str):
                value = _age(value)
            cells.append(value)
        row: dict[str, Any] = {"cells": cells}
        if include_object == "Object":
            row["object"] = item
        elif include_object != "None":
            row["object"] = {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": meta}
        rows.append(row)
    return {"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": list_meta,
            "columnDefinitions": definitions, "rows": rows}


_PATH_STEP = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def _json_path(obj: Any, path: str) -> Any:
    """``.status.progress.step`` or ``.status.conditions[0].type``; None when absent (or unsupported)."""
    value = obj
    for name, index in _PATH_STEP.findall(path):
        if name and isinstance(value, Mapping):
            value = value.get(name)
        elif index and isinstance(value, list) and int(index) < len(value):
            value = value[int(index)]
        else:
            return None
    return value


def _age(timestamp: str) -> str:
    """Time since ``timestamp`` the way kubectl writes an age (k8s.io/apimachinery duration.HumanDuration)."""
    try:
        then = datetime.datetime.strptime(timestamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.timezone.utc)
    except ValueError:
        return "<invalid>"
    seconds = max(0, int((datetime.datetime.now(tz=datetime.timezone.utc) - then).total_seconds()))
    minutes, hours, days = seconds // 60, seconds // 3600, seconds // 86400
    if seconds < 120:
        return f"{seconds}s"
    if minutes < 10:
        return f"{minutes}m{seconds % 60}s" if seconds % 60 else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    if hours < 8:
        return f"{hours}h{minutes % 60}m" if minutes % 60 else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    if hours < 192:
        return f"{days}d{hours % 24}h" if hours % 24 else f"{days}d"
    if days < 730:
        return f"{days}d"
    return f"{days // 365}y{days % 365}d" if days < 2920 and days % 365 else f"{days // 365}y"


def load_printer_columns(crd_dir: Path | None = None) -> dict[tuple[str, str], list[dict[str, Any]]]:
    """(group, plural) -> additionalPrinterColumns of the served version, from the CRD files in ``crd_dir``.

    Defaults to ``crds/`` in this source tree; returns nothing when that folder is absent (an
    installed package), so kubectl then shows only NAME and AGE.
    """
    folder = crd_dir if crd_dir is not None else Path(__file__).resolve().parents[2] / "crds"
    found: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for path in sorted(folder.glob("*.yaml")) if folder.is_dir() else []:
        crd = yaml.safe_load(path.read_text(encoding="utf-8"))
        if not isinstance(crd, dict) or crd.get("kind") != "CustomResourceDefinition":
            continue
        spec = crd.get("spec", {})
        for version in spec.get("versions", []):
            if version.get("served") and version.get("additionalPrinterColumns"):
                found[(str(spec["group"]), str(spec["names"]["plural"]))] = list(version["additionalPrinterColumns"])
    return found


def _now() -> str:
    return datetime.datetime.now(tz=datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def make_emulator() -> KubeEmulator:
    """An emulator that knows the built-in resources and the two SDXL custom resources."""
    emulator = KubeEmulator()
    # Kopf's namespace and CRD observers need the built-in resources to be discoverable.
    emulator.resources.load_bundled()
    declare_sdxl_resources(emulator)
    return emulator


def declare_sdxl_resources(emulator: kmock.KubernetesEmulator) -> None:
    """Make SDXLFineTune and SDXLDeployment discoverable, with a status subresource like the CRDs."""
    verbs = {"get", "list", "watch", "create", "patch", "update", "delete", "deletecollection"}
    emulator.resources["sdxl.io/v1alpha1/sdxlfinetunes"] = kmock.ResourceInfo(
        kind="SDXLFineTune", singular="sdxlfinetune", shortnames={"sdxlft"}, categories={"sdxl"},
        namespaced=True, subresources={"status"}, verbs=verbs,
    )
    emulator.resources["sdxl.io/v1alpha1/sdxldeployments"] = kmock.ResourceInfo(
        kind="SDXLDeployment", singular="sdxldeployment", shortnames={"sdxldep"}, categories={"sdxl"},
        namespaced=True, subresources={"status"}, verbs=verbs,
    )
    if isinstance(emulator, KubeEmulator):
        emulator.printer_columns.update(load_printer_columns())


@contextlib.asynccontextmanager
async def serve_emulator(port: int | None = None) -> AsyncIterator[tuple[KubeEmulator, str]]:
    """Run :func:`make_emulator` on ``127.0.0.1`` (a free port unless given); yields (emulator, base URL)."""
    emulator = make_emulator()
    async with emulator, kmock.Server(emulator, port=port) as server:
        yield emulator, str(server.url).rstrip("/")


def write_kubeconfig(path: str, server_url: str, namespace: str = "default") -> None:
    """Write a kubeconfig that points kubectl and Kopf (the operator) at ``server_url``."""
    import json

    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "sandbox", "cluster": {"server": server_url}}],
        "users": [{"name": "sandbox", "user": {"token": "sandbox"}}],
        "contexts": [{"name": "sandbox", "context": {"cluster": "sandbox", "user": "sandbox", "namespace": namespace}}],
        "current-context": "sandbox",
    }
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(config, handle, indent=2)
