"""How the operator finds its cluster outside a pod: the kubeconfig's current context, read without
the official client; a credential plugin asks for the official client by name. (The in-cluster
service account is Kopf's own reader at a fixed path under /var/run/secrets, which this machine does
not have.)"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import kopf
import pytest
import yaml

from sdxl_operator.handlers import cluster_login
from sdxl_operator.handlers.cluster_login import discover_connection, needs_credential_plugin


def _kubeconfig(path: Path, user: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "work",
        "clusters": [{"name": "c", "cluster": {"server": "https://10.0.0.1:6443", "insecure-skip-tls-verify": True}}],
        "contexts": [{"name": "work", "context": {"cluster": "c", "user": "u", "namespace": "team-a"}},
                     {"name": "other", "context": {"cluster": "c", "user": "plugin"}}],
        "users": [{"name": "u", "user": user},
                  {"name": "plugin", "user": {"exec": {"command": "aws", "apiVersion": "x"}}}],
    }))
    return path


@pytest.fixture(autouse=True)
def outside_a_pod(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cluster_login, "SERVICE_ACCOUNT_TOKEN", "/nonexistent/token")


def test_a_kubeconfig_token_is_read_from_the_current_context(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUBECONFIG", str(_kubeconfig(tmp_path / "config", {"token": "abc"})))
    connection = discover_connection(settings=kopf.OperatorSettings())
    assert (connection.server, connection.token, connection.default_namespace) == ("https://10.0.0.1:6443", "abc",
                                                                                   "team-a")
    assert not needs_credential_plugin()


def test_a_credential_plugin_names_the_client_that_runs_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "kubernetes", None)  # as in the operator image: not installed
    config = _kubeconfig(tmp_path / "config", {"token": "abc"})
    config.write_text(config.read_text().replace("current-context: work", "current-context: other"))
    monkeypatch.setenv("KUBECONFIG", str(config))
    assert needs_credential_plugin()
    with pytest.raises(kopf.LoginError, match=r"credential plugin .* pip install kubernetes"):
        discover_connection(settings=kopf.OperatorSettings())


def test_relative_certificate_paths_are_taken_from_the_kubeconfigs_folder(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "kube"
    folder.mkdir()
    config = _kubeconfig(folder / "config", {"client-certificate": "certs/me.crt", "client-key": "/abs/me.key"})
    config.write_text(config.read_text().replace("insecure-skip-tls-verify: true", "certificate-authority: ca.crt"))
    monkeypatch.setenv("KUBECONFIG", str(config))
    connection = cluster_login._paths_resolved(kopf.login_with_kubeconfig(settings=kopf.OperatorSettings()))
    assert connection.ca_path == str(folder / "ca.crt")
    assert connection.certificate_path == str(folder / "certs" / "me.crt")
    assert connection.private_key_path == "/abs/me.key"  # absolute: as written


def test_no_cluster_at_all_says_where_it_looked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUBECONFIG", "")
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(kopf.LoginError, match=r"no cluster to connect to: .*KUBECONFIG"):
        discover_connection(settings=kopf.OperatorSettings())


def test_the_operator_runs_without_the_official_client() -> None:
    """The operator image carries no `kubernetes` package: nothing the operator imports may need it.
    (Kopf imports it when present, so this checks our imports in a process that blocks it.)"""
    blocker = ("import sys\n"
               "class Block:\n"
               "    def find_spec(self, name, path=None, target=None):\n"
               "        if name == 'kubernetes' or name.startswith('kubernetes.'):\n"
               "            raise ImportError('blocked: ' + name)\n"
               "sys.meta_path.insert(0, Block())\n"
               "import sdxl_operator.cli, sdxl_operator.handlers.operator_registry\n"
               "print('kubernetes' in sys.modules)\n")
    result = subprocess.run([sys.executable, "-c", blocker], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"
