"""Kubeconfig files for the sandbox's API servers, and reading one back into client settings.

One writer for both control planes: the emulator's (plain HTTP, any token) and the real one's (HTTPS
with the run's CA, a client certificate or a service-account token). kubectl, helm and Kopf (which the
operator logs in with) read what it writes; :func:`read_kubeconfig` gives the sandbox's own client the
same server and credentials.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import os
import ssl
import tempfile
from pathlib import Path


@dataclasses.dataclass(frozen=True)
class Credentials:
    """How one client reaches and authenticates to an API server."""

    server: str
    ca_pem: bytes | None = None
    client_cert_pem: bytes | None = None
    client_key_pem: bytes | None = None
    token: str | None = None


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def write_kubeconfig(path: Path, credentials: Credentials, *, namespace: str = "default",
                     name: str = "sandbox") -> Path:
    """Write a self-contained kubeconfig (certificates embedded) for ``credentials``."""
    cluster: dict[str, str] = {"server": credentials.server}
    if credentials.ca_pem is not None:
        cluster["certificate-authority-data"] = _b64(credentials.ca_pem)
    user: dict[str, str] = {}
    if credentials.client_cert_pem is not None and credentials.client_key_pem is not None:
        user["client-certificate-data"] = _b64(credentials.client_cert_pem)
        user["client-key-data"] = _b64(credentials.client_key_pem)
    if credentials.token is not None:
        user["token"] = credentials.token
    config = {
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": name, "cluster": cluster}],
        "users": [{"name": name, "user": user}],
        "contexts": [{"name": name, "context": {"cluster": name, "user": name, "namespace": namespace}}],
        "current-context": name,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(config, indent=2), encoding="utf-8")
    path.chmod(0o600)
    return path


def read_kubeconfig(path: Path) -> Credentials:
    """The current context's server and credentials of a kubeconfig this module wrote (embedded data only)."""
    config = json.loads(path.read_text(encoding="utf-8"))
    context_name = config["current-context"]
    context = next(c["context"] for c in config["contexts"] if c["name"] == context_name)
    cluster = next(c["cluster"] for c in config["clusters"] if c["name"] == context["cluster"])
    user = next(u["user"] for u in config["users"] if u["name"] == context["user"])

    def data(section: dict[str, str], key: str) -> bytes | None:
        return base64.b64decode(section[key]) if key in section else None

    return Credentials(server=cluster["server"], ca_pem=data(cluster, "certificate-authority-data"),
                       client_cert_pem=data(user, "client-certificate-data"),
                       client_key_pem=data(user, "client-key-data"), token=user.get("token"))


def ssl_context(credentials: Credentials) -> ssl.SSLContext | None:
    """A TLS context that trusts the credentials' CA and presents their client certificate; None for HTTP."""
    if not credentials.server.startswith("https://"):
        return None
    context = ssl.create_default_context(
        cadata=credentials.ca_pem.decode("ascii") if credentials.ca_pem is not None else None)
    if credentials.client_cert_pem is not None and credentials.client_key_pem is not None:
        # The ssl module loads a client certificate from files only: a private file, removed at once.
        handle, name = tempfile.mkstemp(suffix=".pem")
        try:
            with os.fdopen(handle, "wb") as pem:
                pem.write(credentials.client_cert_pem + b"\n" + credentials.client_key_pem)
            context.load_cert_chain(name)
        finally:
            os.unlink(name)
    return context
