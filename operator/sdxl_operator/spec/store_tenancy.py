"""Tenants are namespaces: each one's part of the artifact store, and the URIs a spec may name.

Every workload pod of a cluster can share one cloud identity (the workload ServiceAccount's role), so
the store must not rely on the identity alone to keep tenants apart. The operator therefore checks
every URI a user gives (``spec.output``, ``spec.instanceImages``, ``spec.baseModel``, ``spec.vae``,
``spec.priorPreservation.classImages``; ``spec.lora`` and ``spec.baseModel`` of an SDXLDeployment):

* **Inside the store's bucket or claim** (``s3://<bucket>`` or ``pvc://<claim>`` of the artifact
  store; under the store's path for a local one), a URI must lie under the namespace's own prefix,
  ``<store>/finetunes/<namespace>/``, or under a prefix the administrator allowed for that namespace
  (``SDXL_TENANCY_ALLOWED_PREFIXES``, Helm value ``tenancy.allowedPrefixes``). Anything else there is
  another tenant's data, or the shared compile cache, and is refused as InvalidSpec.
* **Elsewhere** (another bucket, another claim of the namespace, a hub id, ``builtin:``) the URI is
  allowed: a claim belongs to the namespace, and other buckets are governed by the cloud identity,
  which the chart can give each namespace on its own (per-namespace ServiceAccount annotations).
* A path segment ``..`` is refused anywhere: object stores keep it literally, local paths resolve it,
  so what a prefix check sees and what is read would differ.

The namespace's prefix keeps today's layout (``finetunes/<namespace>/``) rather than
``<store>/<namespace>/``: a namespace named ``compiled`` could otherwise write into the shared compile
cache (``<store>/compiled/<key>/``), and existing artifacts stay where they are. Compiled artifacts are
shared across namespaces (the compile verifies the LoRA's bytes before any reuse, so sharing one needs
identical LoRA bytes) unless ``SDXL_SHARED_COMPILE_CACHE=false`` gives each namespace its own cache
under its prefix: with a shared cache every tenant's identity can write ``compiled/``, which is only
safe where tenants cannot run pods of their own with the workload identity. Pure.
"""

from __future__ import annotations

import dataclasses
import fnmatch
from collections.abc import Mapping, Sequence

from sdxl_contract.uris import STORAGE_SCHEMES


@dataclasses.dataclass(frozen=True)
class Location:
    """A URI as scheme, root (bucket or claim; "" for a local path) and normalised path segments."""

    scheme: str
    root: str
    segments: tuple[str, ...]

    def contains(self, other: Location) -> bool:
        return (self.scheme, self.root) == (other.scheme, other.root) and \
            other.segments[:len(self.segments)] == self.segments


def location(uri: str) -> Location | None:
    """The storage location a URI names, or None for a hub id or a ``builtin:`` name."""
    for scheme in STORAGE_SCHEMES:
        if uri.startswith(scheme):
            root, _, path = uri[len(scheme):].partition("/")
            return Location(scheme, root, _segments(path))
    if uri.startswith("/"):
        return Location("", "", _segments(uri))
    return None


def _segments(path: str) -> tuple[str, ...]:
    # "a//b/./c" and "a/b/c" name the same place for the check (S3 would keep the empty segment
    # literally, so such a key is at worst refused or stored inside the prefix, never outside it).
    return tuple(part for part in path.split("/") if part not in ("", "."))


def namespace_prefix(artifact_store: str, namespace: str) -> str:
    """``<artifactStore>/finetunes/<namespace>/``: the namespace's own part of the store."""
    return f"{artifact_store.rstrip('/')}/finetunes/{namespace}/"


def compile_store(artifact_store: str, namespace: str, *, shared: bool) -> str:
    """Where compile Jobs of ``namespace`` keep ``compiled/<key>/``: the store itself (shared across
    namespaces), or the namespace's own prefix (``SDXL_SHARED_COMPILE_CACHE=false``)."""
    return artifact_store if shared else namespace_prefix(artifact_store, namespace).rstrip("/")


def _store_domain(artifact_store: str) -> Location:
    store = location(artifact_store)
    assert store is not None  # settings refuse a store that is not s3://, pvc:// or an absolute path
    if store.scheme:
        return Location(store.scheme, store.root, ())  # the whole bucket or claim
    return store


def allowed_prefixes(namespace: str, allowed: Mapping[str, Sequence[str]]) -> list[str]:
    """The extra prefixes the administrator allowed for ``namespace`` (keys are namespace globs)."""
    return [prefix for pattern, prefixes in allowed.items() if fnmatch.fnmatchcase(namespace, pattern)
            for prefix in prefixes]


def uri_errors(uris: Mapping[str, object], *, namespace: str, artifact_store: str,
               allowed: Mapping[str, Sequence[str]]) -> list[str]:
    """Problems of the URIs a spec gives (``{"spec.output": uri, ...}``) for a resource in ``namespace``."""
    own = namespace_prefix(artifact_store, namespace)
    extra = allowed_prefixes(namespace, allowed)
    permitted = [loc for loc in (location(p) for p in [own, *extra]) if loc is not None]
    domain = _store_domain(artifact_store)
    errors: list[str] = []
    for where, uri in uris.items():
        if not isinstance(uri, str):
            continue
        place = location(uri)
        if place is None:
            continue
        if ".." in uri.split("/"):
            errors.append(f"{where}: {uri!r} contains a '..' segment; name the location directly")
            continue
        if not domain.contains(place) or any(prefix.contains(place) for prefix in permitted):
            continue
        also = f" or {', '.join(extra)}" if extra else ""
        errors.append(
            f"{where}: {uri} is in the operator's artifact store ({artifact_store}) but outside this namespace's "
            f"part of it, which is {own}{also}. Use a location under {own} (an unset spec.output goes there "
            f"by itself), or ask the cluster administrator to allow that prefix for namespace {namespace} "
            "(Helm value tenancy.allowedPrefixes)"
        )
    return errors
