"""The real control plane's local parts, each on its own: the run's certificates and kubeconfigs, the
kubelet log endpoint the API server proxies ``kubectl logs`` to, the simulated nodes, and finding the
binaries. The whole control plane runs in tests/e2e; these pin down the pieces without it.
"""

from __future__ import annotations

import json
from pathlib import Path

import aiohttp
import pytest

from sdxl_sandbox.api_client import KubeClient
from sdxl_sandbox.certificates import CertificateAuthority
from sdxl_sandbox.control_plane import BINARIES_ENV, ControlPlaneError, control_plane_binaries
from sdxl_sandbox.kubeconfig import Credentials, read_kubeconfig, ssl_context, write_kubeconfig
from sdxl_sandbox.kubelet_endpoint import serve_kubelet_endpoint
from sdxl_sandbox.simulated_nodes import CPU_NODE, GPU_NODE, INF2_NODE


def test_a_kubeconfig_round_trips_its_server_and_credentials(tmp_path: Path) -> None:
    credentials = Credentials(server="https://127.0.0.1:6443", ca_pem=b"ca", client_cert_pem=b"cert",
                              client_key_pem=b"key")
    path = write_kubeconfig(tmp_path / "admin.kubeconfig", credentials, namespace="team-a")
    assert read_kubeconfig(path) == credentials
    config = json.loads(path.read_text())
    assert config["contexts"][0]["context"]["namespace"] == "team-a"
    assert path.stat().st_mode & 0o077 == 0  # credentials: readable by the owner only
    token = write_kubeconfig(tmp_path / "sa.kubeconfig", Credentials(server="https://x", ca_pem=b"ca", token="t"))
    assert read_kubeconfig(token).token == "t" and read_kubeconfig(token).client_cert_pem is None


@pytest.mark.asyncio
async def test_the_log_endpoint_serves_a_pods_log_over_tls_signed_by_the_runs_ca(tmp_path: Path) -> None:
    ca = CertificateAuthority(tmp_path / "pki")
    serving = ca.issue("kubelet", "kubelet", server_names=("localhost",), server_addresses=("127.0.0.1",))
    log = tmp_path / "log.txt"
    log.write_text("one\ntwo\nthree\n")

    def lookup(namespace: str, pod: str) -> tuple[Path, bool] | None:
        return (log, False) if (namespace, pod) == ("team-a", "trainer-x") else None

    async with serve_kubelet_endpoint(lookup, serving) as port:
        # The client trusts the run's CA only: the handshake proves the certificate chain and its SAN.
        credentials = Credentials(server=f"https://127.0.0.1:{port}", ca_pem=ca.cert_pem)
        client = KubeClient(credentials.server, credentials=credentials)
        try:
            assert await client.request("GET", "/containerLogs/team-a/trainer-x/trainer?tailLines=2") == "two\nthree\n"
            assert await client.request("GET", "/containerLogs/team-a/trainer-x/trainer?limitBytes=3") == "one"
            with pytest.raises(Exception, match="HTTP 404"):
                await client.request("GET", "/containerLogs/team-a/other/trainer")
        finally:
            await client.close()
        # A client that does not trust the run's CA is refused.
        context = ssl_context(Credentials(server=credentials.server, ca_pem=CertificateAuthority(tmp_path / "x").cert_pem))
        async with aiohttp.ClientSession() as session:
            with pytest.raises(aiohttp.ClientConnectorCertificateError):
                await session.get(f"{credentials.server}/containerLogs/team-a/trainer-x/t", ssl=context)


def test_the_simulated_nodes_offer_what_the_pools_select() -> None:
    gpu, inf2, cpu = (node.status(10250) for node in (GPU_NODE, INF2_NODE, CPU_NODE))
    assert gpu["allocatable"]["nvidia.com/gpu"] == "1" and "aws.amazon.com/neuron" not in gpu["allocatable"]
    assert inf2["allocatable"]["aws.amazon.com/neuron"] == "1"
    assert "nvidia.com/gpu" not in cpu["allocatable"] and "aws.amazon.com/neuron" not in cpu["allocatable"]
    assert INF2_NODE.manifest()["metadata"]["labels"]["node.kubernetes.io/instance-type"] == "inf2.8xlarge"
    assert [t["key"] for t in INF2_NODE.manifest()["spec"]["taints"]] == ["aws.amazon.com/neuron"]
    assert [t["key"] for t in GPU_NODE.manifest()["spec"]["taints"]] == ["nvidia.com/gpu"]
    assert CPU_NODE.manifest()["spec"]["taints"] == []
    # The API server proxies pod logs to this address and port.
    assert gpu["daemonEndpoints"]["kubeletEndpoint"]["Port"] == 10250
    assert {"type": "InternalIP", "address": "127.0.0.1"} in gpu["addresses"]
    assert gpu["conditions"][0]["type"] == "Ready" and gpu["conditions"][0]["status"] == "True"


def test_given_binaries_must_all_be_there(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "etcd").write_text("")
    monkeypatch.setenv(BINARIES_ENV, str(tmp_path))
    with pytest.raises(ControlPlaneError, match="lacks kube-apiserver, kube-controller-manager, kube-scheduler, kubectl"):
        control_plane_binaries()
