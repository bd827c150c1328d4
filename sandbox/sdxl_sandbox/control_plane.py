"""A real Kubernetes control plane on loopback: etcd, kube-apiserver, kube-controller-manager and
kube-scheduler, built from their Go modules (``tools/control-plane``) and started as local processes.

What envtest and "Kubernetes the hard way" run, with nothing left out that the operator relies on:

* etcd on a free loopback port, its data in the run's folder (``--unsafe-no-fsync``: a test cluster);
* the API server with secure serving only (a CA and certificates made per run, see ``certificates``),
  client-certificate and service-account token authentication, RBAC authorization, the default
  admission plugins (ServiceAccount, ResourceQuota, LimitRanger, ... and CEL validation of CRDs), a
  service-account signing key (TokenRequest works), and pod logs proxied to the nodes' kubelet port;
* the controller manager with every default controller (Job, Deployment, ReplicaSet, garbage
  collector, namespace, HPA, endpoints, service accounts, ...) except the node-lifecycle controller:
  the simulated nodes send no heartbeats, and that controller would evict their pods;
* the scheduler, which binds pods to the simulated nodes by their resources, labels and taints.

Each component logs to ``<folder>/logs/<name>.log``. :meth:`ControlPlane.admin_kubeconfig` is a
kubeconfig for ``kubectl`` (group ``system:masters``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import aiohttp

from sdxl_sandbox.api_client import ApiError, KubeClient
from sdxl_sandbox.certificates import (
    API_SERVER_ADDRESSES,
    API_SERVER_NAMES,
    CertificateAuthority,
    KeyPair,
    service_account_keys,
)
from sdxl_sandbox.container_launch import LOOPBACK, free_port
from sdxl_sandbox.kubeconfig import Credentials, write_kubeconfig
from sdxl_sandbox.local_process import die_with_parent

REPO_ROOT = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = REPO_ROOT / "tools" / "control-plane" / "build.sh"
BINARIES_ENV = "SDXL_CONTROL_PLANE_BIN"
BINARIES = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl")
# Room for a Service per SDXLDeployment at the scale benchmarks' 1,000 (a /24 has 254 addresses: the
# 255th Service is refused, "failed to allocate a serviceIP: range is full"). 10.0.0.1 stays the API
# server's own Service address, which its certificate names.
SERVICE_CLUSTER_IP_RANGE = "10.0.0.0/16"
SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc.cluster.local"
START_TIMEOUT_SECONDS = 120.0
STOP_SECONDS = 10.0
# Every default controller but the node-lifecycle one (see the module docstring), and the CSR signer,
# which needs a signing CA the sandbox does not issue certificates with.
CONTROLLERS = "*,-nodelifecycle,-csrsigning"


class ControlPlaneError(RuntimeError):
    """The control plane could not be built or started; the message says which part and why."""


def control_plane_binaries() -> Path:
    """The folder with the control plane's binaries: ``$SDXL_CONTROL_PLANE_BIN``, else built (once) and cached.

    The build (``tools/control-plane/build.sh``) compiles the pinned releases from the Go module proxy
    into ``~/.cache/sdxl-operator/control-plane/<versions>/``; later calls return that folder at once.
    """
    given = os.environ.get(BINARIES_ENV)
    folder: Path
    if given:
        folder = Path(given)
    else:
        if not BUILD_SCRIPT.is_file():
            raise ControlPlaneError(f"{BUILD_SCRIPT} is missing: the real control plane is built from a source "
                                    "checkout of sdxl-operator")
        try:
            done = subprocess.run(["bash", str(BUILD_SCRIPT)], check=True, capture_output=True, text=True)
        except FileNotFoundError as exc:
            raise ControlPlaneError(f"cannot run {BUILD_SCRIPT}: {exc}") from exc
        except subprocess.CalledProcessError as exc:
            raise ControlPlaneError(f"building the control plane failed (exit {exc.returncode}); needs Go 1.25+ and "
                                    f"the Go module proxy:\n{exc.stderr[-3000:]}") from exc
        folder = Path(done.stdout.strip().splitlines()[-1])
    missing = [name for name in BINARIES if not (folder / name).is_file()]
    if missing:
        raise ControlPlaneError(f"{folder} lacks {', '.join(missing)}; run `make control-plane` or unset {BINARIES_ENV}")
    return folder


class _Component:
    """One control plane process, its output in a log file."""

    def __init__(self, name: str, argv: list[str], log_path: Path) -> None:
        self.name = name
        self.argv = argv
        self.log_path = log_path
        self.process: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.process = await asyncio.create_subprocess_exec(
                *self.argv, stdin=asyncio.subprocess.DEVNULL, stdout=log, stderr=log,
                start_new_session=True, preexec_fn=die_with_parent)

    def check_running(self) -> None:
        if self.process is not None and self.process.returncode is not None:
            tail = self.log_path.read_text(encoding="utf-8", errors="replace")[-2000:]
            raise ControlPlaneError(f"{self.name} exited with {self.process.returncode}; its log "
                                    f"({self.log_path}) ends:\n{tail}")

    async def stop(self) -> None:
        if self.process is None or self.process.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(self.process.wait(), STOP_SECONDS)
        except asyncio.TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            await self.process.wait()


class ControlPlane:
    """Start with ``async with ControlPlane(folder) as plane:``; everything stops on exit."""

    def __init__(self, folder: Path, binaries: Path | None = None) -> None:
        self.folder = folder.resolve()
        self._binaries = binaries
        self._components: list[_Component] = []
        self.server_url = ""
        self.startup_seconds = 0.0
        self._ca: CertificateAuthority | None = None

    @property
    def admin_kubeconfig(self) -> Path:
        return self.folder / "admin.kubeconfig"

    @property
    def pki(self) -> Path:
        return self.folder / "pki"

    @property
    def binaries(self) -> Path:
        if self._binaries is None:
            self._binaries = control_plane_binaries()
        return self._binaries

    @property
    def kubectl(self) -> Path:
        return self.binaries / "kubectl"

    async def __aenter__(self) -> ControlPlane:
        try:
            await self.start()
        except BaseException:
            await self.stop()
            raise
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    def _credentials(self, pair: KeyPair) -> Credentials:
        assert self._ca is not None
        return Credentials(server=self.server_url, ca_pem=self._ca.cert_pem,
                           client_cert_pem=pair.cert.read_bytes(), client_key_pem=pair.key.read_bytes())

    def admin_client(self) -> KubeClient:
        return KubeClient.from_kubeconfig(self.admin_kubeconfig)

    async def start(self) -> None:
        started = time.monotonic()
        binaries = self.binaries
        self.folder.mkdir(parents=True, exist_ok=True)
        logs = self.folder / "logs"
        ca = self._ca = CertificateAuthority(self.pki)
        serving = ca.issue("apiserver", "kube-apiserver", server_names=API_SERVER_NAMES,
                           server_addresses=API_SERVER_ADDRESSES)
        kubelet_client = ca.issue("apiserver-kubelet-client", "kube-apiserver-kubelet-client",
                                  organizations=("system:masters",))
        admin = ca.issue("admin", "sandbox-admin", organizations=("system:masters",))
        controller_manager = ca.issue("controller-manager", "system:kube-controller-manager")
        scheduler = ca.issue("scheduler", "system:kube-scheduler")
        accounts = service_account_keys(self.pki)

        etcd_port, peer_port, api_port = free_port(), free_port(), free_port()
        etcd_url = f"http://{LOOPBACK}:{etcd_port}"
        etcd = _Component("etcd", [
            str(binaries / "etcd"), "--name", "sandbox", "--data-dir", str(self.folder / "etcd"),
            "--listen-client-urls", etcd_url, "--advertise-client-urls", etcd_url,
            "--listen-peer-urls", f"http://{LOOPBACK}:{peer_port}",
            "--initial-advertise-peer-urls", f"http://{LOOPBACK}:{peer_port}",
            "--initial-cluster", f"sandbox=http://{LOOPBACK}:{peer_port}",
            "--unsafe-no-fsync", "--log-level", "warn",
        ], logs / "etcd.log")
        await self._start(etcd)
        await self._wait_http(etcd, f"{etcd_url}/health", None)

        self.server_url = f"https://{LOOPBACK}:{api_port}"
        apiserver = _Component("kube-apiserver", [
            str(binaries / "kube-apiserver"), "--etcd-servers", etcd_url,
            "--bind-address", LOOPBACK, "--advertise-address", LOOPBACK, "--secure-port", str(api_port),
            "--tls-cert-file", str(serving.cert), "--tls-private-key-file", str(serving.key),
            "--client-ca-file", str(ca.cert), "--authorization-mode", "RBAC",
            "--service-cluster-ip-range", SERVICE_CLUSTER_IP_RANGE,
            "--service-account-issuer", SERVICE_ACCOUNT_ISSUER,
            "--service-account-key-file", str(accounts.cert),
            "--service-account-signing-key-file", str(accounts.key),
            "--kubelet-client-certificate", str(kubelet_client.cert),
            "--kubelet-client-key", str(kubelet_client.key),
            "--kubelet-preferred-address-types", "InternalIP",
            "--allow-privileged=true", "--profiling=false", "--cert-dir", str(self.pki / "generated"),
            "--v", "1",
        ], logs / "kube-apiserver.log")
        await self._start(apiserver)
        write_kubeconfig(self.admin_kubeconfig, self._credentials(admin))
        admin_tls = self._credentials(admin)
        await self._wait_http(apiserver, f"{self.server_url}/readyz", admin_tls)

        manager_config = write_kubeconfig(self.folder / "controller-manager.kubeconfig",
                                          self._credentials(controller_manager))
        scheduler_config = write_kubeconfig(self.folder / "scheduler.kubeconfig", self._credentials(scheduler))
        await self._start(_Component("kube-controller-manager", [
            str(binaries / "kube-controller-manager"), "--kubeconfig", str(manager_config),
            "--service-account-private-key-file", str(accounts.key), "--root-ca-file", str(ca.cert),
            "--use-service-account-credentials", "--controllers", CONTROLLERS, "--leader-elect=false",
            "--bind-address", LOOPBACK, "--secure-port", "0", "--v", "1",
        ], logs / "kube-controller-manager.log"))
        await self._start(_Component("kube-scheduler", [
            str(binaries / "kube-scheduler"), "--kubeconfig", str(scheduler_config), "--leader-elect=false",
            "--bind-address", LOOPBACK, "--secure-port", "0", "--v", "1",
        ], logs / "kube-scheduler.log"))
        # The controller manager is working once its service-account controller made `default/default`.
        async with contextlib.AsyncExitStack() as stack:
            client = self.admin_client()
            stack.push_async_callback(client.close)
            await self._until("the controller manager to create the default ServiceAccount",
                              lambda: client.get("v1", "serviceaccounts", "default", "default"))
        self.startup_seconds = time.monotonic() - started

    async def _start(self, component: _Component) -> None:
        self._components.append(component)
        await component.start()

    def check_running(self) -> None:
        """ControlPlaneError naming the component that stopped, with its log's tail."""
        for component in self._components:
            component.check_running()

    async def _until(self, what: str, check: Any) -> Any:
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while True:
            self.check_running()
            with contextlib.suppress(ApiError, aiohttp.ClientError, OSError):
                value = await check()
                if value:
                    return value
            if time.monotonic() > deadline:
                raise ControlPlaneError(f"timed out after {START_TIMEOUT_SECONDS:.0f}s waiting for {what} "
                                        f"(logs in {self.folder / 'logs'})")
            await asyncio.sleep(0.25)

    async def _wait_http(self, component: _Component, url: str, credentials: Credentials | None) -> None:
        client = KubeClient(url.rsplit("/", 1)[0], credentials=credentials)
        path = "/" + url.rsplit("/", 1)[1]

        async def healthy() -> bool:
            await client.request("GET", path)
            return True

        try:
            await self._until(f"{component.name} at {url}", healthy)
        finally:
            await client.close()

    async def service_account_kubeconfig(self, namespace: str, name: str, path: Path, *,
                                         expiration_seconds: int = 86400) -> Path:
        """A kubeconfig that authenticates as ServiceAccount ``namespace/name`` (a TokenRequest token)."""
        assert self._ca is not None, "the control plane is not started"
        async with contextlib.AsyncExitStack() as stack:
            client = self.admin_client()
            stack.push_async_callback(client.close)
            answer = await client.request(
                "POST", f"/api/v1/namespaces/{namespace}/serviceaccounts/{name}/token",
                {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                 "spec": {"expirationSeconds": expiration_seconds}})
        token = str(answer["status"]["token"])
        return write_kubeconfig(path, Credentials(server=self.server_url, ca_pem=self._ca.cert_pem, token=token),
                                namespace=namespace)

    async def stop(self) -> None:
        """Stop every component, the last started first."""
        for component in reversed(self._components):
            with contextlib.suppress(Exception):
                await component.stop()
        self._components.clear()
