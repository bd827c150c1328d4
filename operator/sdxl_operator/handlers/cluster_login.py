"""How the operator finds its cluster and credentials: as kubectl does.

1. In a pod: the pod's service account (token, CA, namespace), read by Kopf's own reader.
2. Else the current context of ``$KUBECONFIG`` (default ``~/.kube/config``), read by Kopf's own
   reader: a token, a client certificate, or a user name and password. Relative certificate and key
   paths are taken from the kubeconfig file's folder, as kubectl takes them.
3. A kubeconfig user that runs a credential plugin (``exec``, as ``aws eks update-kubeconfig``
   writes) or an ``auth-provider``: only the official ``kubernetes`` client runs those, so that
   case alone uses it. The operator image has no need for it (it runs in a pod) and does not carry it;
   on a workstation, ``pip install kubernetes``.

Kopf logs in again when the API server answers 401 (an expired token); each login hands its
credentials to the handlers' API client too (:meth:`KubeApi.use`).
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import kopf
import yaml

SERVICE_ACCOUNT_TOKEN = "/var/run/secrets/kubernetes.io/serviceaccount/token"


def discover_connection(settings: kopf.OperatorSettings, **kwargs: Any) -> kopf.ConnectionInfo:
    """The server and credentials to use (module docstring); LoginError naming what to do if none."""
    if os.path.exists(SERVICE_ACCOUNT_TOKEN):
        found = kopf.login_with_service_account(settings=settings, **kwargs)
        if found is not None:
            return found
    if needs_credential_plugin():
        try:
            import kubernetes  # noqa: F401  # only to tell whether the official client is installed
        except ImportError:
            raise kopf.LoginError(
                "the kubeconfig's current user gets its token from a credential plugin (exec or auth-provider), "
                "which only the official client can run: pip install kubernetes, or use a kubeconfig with a "
                "token or client certificate") from None
        found = kopf.login_via_client(settings=settings, **kwargs)
    else:
        found = kopf.login_with_kubeconfig(settings=settings, **kwargs)
        if found is not None:
            found = _paths_resolved(found)
    if found is None:
        raise kopf.LoginError("no cluster to connect to: not in a pod with a service account, and no kubeconfig "
                              "($KUBECONFIG or ~/.kube/config); point KUBECONFIG at one")
    return found


def needs_credential_plugin() -> bool:
    """Whether the kubeconfig's current user runs ``exec`` or an ``auth-provider`` for its token."""
    user, _, _ = _current_entries()
    return bool(user.get("exec") or user.get("auth-provider"))


def _paths_resolved(connection: kopf.ConnectionInfo) -> kopf.ConnectionInfo:
    """``connection`` with its relative certificate and key paths taken from the folder of the
    kubeconfig file that names them, as kubectl reads them (Kopf's reader leaves them relative)."""
    _, user_folder, cluster_folder = _current_entries()

    def resolved(path: Any, folder: str | None) -> Any:
        if not path or not folder or os.path.isabs(os.path.expanduser(str(path))):
            return path
        return os.path.join(folder, str(path))

    return dataclasses.replace(
        connection,
        ca_path=resolved(connection.ca_path, cluster_folder),
        certificate_path=resolved(connection.certificate_path, user_folder),
        private_key_path=resolved(connection.private_key_path, user_folder),
    )


def _current_entries() -> tuple[dict[str, Any], str | None, str | None]:
    """The ``user`` entry of the current context, and the folders of the files that define that user
    and its cluster; merged over ``$KUBECONFIG``'s files as kubectl does (the first file that sets a
    value wins). ({}, None, None) when there is none."""
    paths = [os.path.expanduser(path) for path in
             (os.environ.get("KUBECONFIG") or "~/.kube/config").split(os.pathsep) if path.strip()]
    current: str | None = None
    contexts: dict[str, Any] = {}
    users: dict[str, tuple[dict[str, Any], str]] = {}
    clusters: dict[str, str] = {}
    for path in paths:
        if not os.path.exists(path):
            continue
        with open(path, encoding="utf-8") as file:
            config = yaml.safe_load(file) or {}
        folder = os.path.dirname(os.path.abspath(path))
        current = current or config.get("current-context")
        for entry in config.get("contexts") or []:
            contexts.setdefault(entry.get("name"), entry.get("context") or {})
        for entry in config.get("users") or []:
            users.setdefault(entry.get("name"), (entry.get("user") or {}, folder))
        for entry in config.get("clusters") or []:
            clusters.setdefault(entry.get("name"), folder)
    context = contexts.get(current, {}) if current else {}
    user, user_folder = users.get(str(context.get("user")), ({}, ""))
    return user, user_folder or None, clusters.get(str(context.get("cluster")))
