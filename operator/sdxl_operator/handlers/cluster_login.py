"""How the operator finds its cluster and credentials: as kubectl does.

1. In a pod: the pod's service account (token, CA, namespace), read by Kopf's own reader.
2. Else the current context of ``$KUBECONFIG`` (default ``~/.kube/config``), read by Kopf's own
   reader: a token, a client certificate, or a user name and password.
3. A kubeconfig user that runs a credential plugin (``exec``, as ``aws eks update-kubeconfig``
   writes) or an ``auth-provider``: only the official ``kubernetes`` client runs those, so that
   case alone uses it. The operator image has no need for it (it runs in a pod) and does not carry it;
   on a workstation, ``pip install kubernetes``.

Kopf logs in again when the API server answers 401 (an expired token); each login hands its
credentials to the handlers' API client too (:meth:`KubeApi.use`).
"""

from __future__ import annotations

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
    if found is None:
        raise kopf.LoginError("no cluster to connect to: not in a pod with a service account, and no kubeconfig "
                              "($KUBECONFIG or ~/.kube/config); point KUBECONFIG at one")
    return found


def needs_credential_plugin() -> bool:
    """Whether the kubeconfig's current user runs ``exec`` or an ``auth-provider`` for its token."""
    user = _current_user()
    return bool(user.get("exec") or user.get("auth-provider"))


def _current_user() -> dict[str, Any]:
    """The ``user`` entry of the current context, merged over ``$KUBECONFIG``'s files as kubectl does
    (the first file that sets a value wins); {} when there is none."""
    paths = [os.path.expanduser(path) for path in
             (os.environ.get("KUBECONFIG") or "~/.kube/config").split(os.pathsep) if path.strip()]
    current: str | None = None
    contexts: dict[str, Any] = {}
    users: dict[str, Any] = {}
    for path in paths:
        if not os.path.exists(path):
            continue
        with open(path, encoding="utf-8") as file:
            config = yaml.safe_load(file) or {}
        current = current or config.get("current-context")
        for entry in config.get("contexts") or []:
            contexts.setdefault(entry.get("name"), entry.get("context") or {})
        for entry in config.get("users") or []:
            users.setdefault(entry.get("name"), entry.get("user") or {})
    user: dict[str, Any] = users.get(contexts.get(current, {}).get("user"), {}) if current else {}
    return user
