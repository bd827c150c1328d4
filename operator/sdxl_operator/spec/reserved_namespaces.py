"""Namespaces the operator never reconciles (``SDXL_RESERVED_NAMESPACES``, ``kube-*`` by default).

A cluster-wide operator may create Jobs, Deployments and ServiceAccounts in any namespace it serves.
In the system namespaces that would let anyone who may create an SDXLFineTune there place work beside
the cluster's own components, so resources there are ignored: every handler's Kopf ``when=`` filter
(and the event handlers' first check) uses :func:`is_reserved`, and Kopf then neither calls a handler
nor adds a finalizer or its annotations: no child, no status, no mark. Pure.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable


def is_reserved(namespace: str | None, patterns: Iterable[str]) -> bool:
    """Whether ``namespace`` matches one of the globs in ``patterns``."""
    return bool(namespace) and any(fnmatch.fnmatchcase(str(namespace), pattern) for pattern in patterns)
