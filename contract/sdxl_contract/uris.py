"""The URI grammar of models, inputs and artifacts, as both sides read it.

* ``s3://bucket/prefix`` — an S3 bucket and an optional prefix (credentials from the pod's identity).
* ``pvc://claim/path`` — a PersistentVolumeClaim of the resource's namespace and a path inside it;
  the operator mounts the claim at ``<PVC_ROOT>/<claim>`` (:mod:`sdxl_contract.workload_protocol`),
  where the workloads find it.
* ``builtin:<name>`` — an embedded test model or image set (``builtin:tiny``, ``builtin:sample-subject``),
  a fraction of SDXL's memory and CPU.
* anything else — a local path (or, for a model, a Hugging Face repo id).

Whether a URI in a spec is well formed (a valid bucket or claim name) is the CRDs' rule, the one
schema (``sdxl_contract.schema``); this module only tells the kinds apart.
"""

from __future__ import annotations

from typing import Literal

S3_SCHEME = "s3://"
PVC_SCHEME = "pvc://"
BUILTIN_PREFIX = "builtin:"
# The schemes of writable storage outside the pod.
STORAGE_SCHEMES: tuple[str, ...] = (S3_SCHEME, PVC_SCHEME)

Scheme = Literal["s3", "pvc", "builtin", "local"]


def scheme_of(uri: str) -> Scheme:
    """'s3', 'pvc', 'builtin' or 'local'."""
    if uri.startswith(S3_SCHEME):
        return "s3"
    if uri.startswith(PVC_SCHEME):
        return "pvc"
    if uri.startswith(BUILTIN_PREFIX):
        return "builtin"
    return "local"


def is_builtin(uri: str) -> bool:
    """An embedded test model or image set (``builtin:tiny``...), not something stored anywhere."""
    return uri.startswith(BUILTIN_PREFIX)


def pvc_claim(uri: object) -> str | None:
    """The claim of a ``pvc://claim/path`` URI, else None."""
    if isinstance(uri, str) and uri.startswith(PVC_SCHEME):
        claim = uri[len(PVC_SCHEME):].split("/", 1)[0]
        return claim or None
    return None
