"""Deterministic names for the objects the operator creates.

Every child name comes from here, so a retried or restarted handler always computes the same name and
a create that answers 409 means "already there". Names are DNS-1123 labels (lowercase alphanumerics
and '-', starting and ending alphanumeric, at most 63 characters): Jobs put their name into a label,
Services need a label-shaped name, and one rule for all children keeps it simple. A name that would
not fit becomes a readable slug plus an 8-character hash of the full original, so two long names
that share a prefix still differ.
"""

from __future__ import annotations

import hashlib
import re

MAX_LABEL = 63
HASH_LENGTH = 8
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_NOT_ALLOWED = re.compile(r"[^a-z0-9-]+")


def is_dns_label(value: str) -> bool:
    """True when ``value`` is a valid DNS-1123 label."""
    return len(value) <= MAX_LABEL and bool(_DNS_LABEL.match(value))


def short_hash(value: str, length: int = HASH_LENGTH) -> str:
    """A stable hex digest prefix of ``value``."""
    return hashlib.sha256(value.encode("utf-8")).hexdigest()[:length]


def slugify(value: str) -> str:
    """Lowercase ``value`` and replace runs of characters a DNS label forbids with '-'."""
    slug = _NOT_ALLOWED.sub("-", value.lower())
    return re.sub(r"-{2,}", "-", slug).strip("-")


def child_name(parent: str, suffix: str = "") -> str:
    """``<parent>-<suffix>`` when that is a DNS label, else ``<slug>-<hash8>[-<suffix>]`` cut to 63.

    The suffix (e.g. ``train``) is kept whole so the kind of child stays readable in ``kubectl get``.
    """
    if suffix and not is_dns_label(suffix):
        raise ValueError(f"child name suffix must be a short DNS label, got {suffix!r}")
    wanted = f"{parent}-{suffix}" if suffix else parent
    if is_dns_label(wanted):
        return wanted
    digest = short_hash(wanted)
    tail = f"-{digest}-{suffix}" if suffix else f"-{digest}"
    room = MAX_LABEL - len(tail)
    slug = slugify(parent)[:room].rstrip("-")
    if not slug or not slug[0].isalnum():
        slug = "x" + slug[: room - 1]
    return f"{slug}{tail}"


def label_value(value: str) -> str:
    """``value`` when it is a valid label value (<= 63, [A-Za-z0-9-_.]), else a slug + hash of it."""
    if len(value) <= MAX_LABEL and _LABEL_VALUE.match(value):
        return value
    return child_name(value)


def finetune_job_name(finetune: str) -> str:
    """The training Job of an SDXLFineTune: ``<ft>-train``."""
    return child_name(finetune, "train")


def finetune_configmap_name(finetune: str) -> str:
    """The resolved-spec ConfigMap of an SDXLFineTune: ``<ft>-spec``."""
    return child_name(finetune, "spec")


def server_configmap_name(deployment: str) -> str:
    """The spec ConfigMap the server pods of an SDXLDeployment read: ``<dep>-server-spec``.

    Not ``<dep>-spec``: an SDXLFineTune of the same name in the namespace has that one.
    """
    return child_name(deployment, "server-spec")


def compile_job_name(deployment: str, key: str) -> str:
    """The compile Job of an SDXLDeployment for one compile key: ``<dep>-compile-<key8>``."""
    return child_name(deployment, f"compile-{key[:HASH_LENGTH]}")


def deployment_name(deployment: str) -> str:
    """The inference Deployment (and its Service) of an SDXLDeployment: ``<dep>``.

    Services need a DNS-1035 label (starting with a letter). A name that is one is used as it is; any
    other gets a readable form with a hash of the whole name, ``d-<slug>-<hash8>``. The hash is what
    keeps the mapping one-to-one: a plain ``d-`` prefix would give ``1abc`` the child name of an
    SDXLDeployment called ``d-1abc``.
    """
    if deployment[:1].isalpha():
        return child_name(deployment)  # the name itself, or slug + hash when too long
    digest = short_hash(deployment)
    tail = f"-{digest}"
    slug = slugify(deployment)[: MAX_LABEL - len(tail) - 2].rstrip("-")
    return f"d-{slug}{tail}" if slug else f"d{tail}"
