"""The whole product on one machine: an API server, the real operator, and the local executor.

:class:`Sandbox` is what ``sdxl-operator sandbox`` and the end-to-end tests share. Two API servers
can stand behind it (``control_plane``):

* ``"real"`` — kube-apiserver, kube-controller-manager, kube-scheduler and etcd built from their Go
  modules (:mod:`~sdxl_sandbox.control_plane`), three simulated nodes (a GPU node, an
  inf2-like node, a CPU node; :mod:`~sdxl_sandbox.simulated_nodes`) whose kubelet is the local
  executor, and the Helm chart installed into it (CRDs, RBAC, ServiceAccounts). The operator runs as
  the chart's ServiceAccount with the chart's arguments and settings; Jobs, Deployments, ReplicaSets,
  garbage collection and scheduling are Kubernetes' own.
* ``"emulator"`` — :func:`~sdxl_sandbox.kube_emulator.serve_emulator` (fast; no admission,
  controllers, scheduler or RBAC); the executor plays the Job and Deployment controllers too. The
  operator runs cluster-wide with the sandbox's settings.

Either way ``<workdir>/kubeconfig`` points ``kubectl`` at the API server (an admin), the operator is
``sdxl-operator run`` in its own process (its log: ``<workdir>/operator.log``) with artifact store
``pvc://sdxl-artifacts/store`` (a folder under ``<workdir>/pvcs``), a short status interval and image
names ending in ``:sandbox`` (the executor runs local code whatever the image), and workload logs go
to ``<workdir>/pods/<namespace>/<pod>/log.txt`` (and to ``kubectl logs``).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import os
import signal
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml

from sdxl_sandbox.api_client import ApiError, KubeClient
from sdxl_sandbox.chart_install import (
    InstalledOperator,
    ensure_claim,
    ensure_namespace,
    install_chart,
    installed_args,
)
from sdxl_sandbox.container_launch import LOOPBACK, resolve_program
from sdxl_sandbox.control_plane import ControlPlane
from sdxl_sandbox.kube_emulator import KubeEmulator, serve_emulator, write_kubeconfig
from sdxl_sandbox.kubelet_endpoint import serve_kubelet_endpoint
from sdxl_sandbox.local_executor import LocalExecutor
from sdxl_sandbox.local_process import die_with_parent
from sdxl_sandbox.simulated_nodes import DEFAULT_NODES, SimulatedNode, register_node

T = TypeVar("T")
FINETUNES = "sdxl.io/v1alpha1/sdxlfinetunes"
DEPLOYMENTS = "sdxl.io/v1alpha1/sdxldeployments"
SANDBOX_IMAGE_TAG = "sandbox"
OPERATOR_STOP_SECONDS = 10.0
CONTROL_PLANES = ("emulator", "real")
ARTIFACT_STORE = "pvc://sdxl-artifacts/store"
ARTIFACT_CLAIM = "sdxl-artifacts"
# The chart's settings that make sense on one machine: local images (the executor ignores them anyway).
SANDBOX_CHART_VALUES = (
    *(f"images.{role}.tag={SANDBOX_IMAGE_TAG}" for role in ("operator", "train", "neuron", "nvidia", "cpu")),
    "images.workloadPullPolicy=Never",
)


def operator_environment(workdir: Path, status_interval_seconds: float,
                         chart: InstalledOperator | None = None, pending_grace_seconds: float = 60.0) -> dict[str, str]:
    """The operator's settings in the sandbox (see ``sdxl_operator.core.settings``).

    With ``chart``: the chart's own settings and the chart's ServiceAccount's kubeconfig; the status
    interval and pending grace period are shortened either way, for tests that take minutes, not hours.
    """
    env = {name: value for name, value in os.environ.items()
           if not name.startswith("SDXL_") and not name.startswith("KUBERNETES_")}
    if chart is not None:
        env.update(chart.env)
        env.update({"KUBECONFIG": str(workdir / "operator.kubeconfig"),
                    "SDXL_STATUS_INTERVAL_SECONDS": str(status_interval_seconds),
                    "SDXL_PENDING_GRACE_SECONDS": str(pending_grace_seconds), "PYTHONUNBUFFERED": "1"})
        return env
    env.update({
        "KUBECONFIG": str(workdir / "kubeconfig"),
        "SDXL_ARTIFACT_STORE": ARTIFACT_STORE,
        "SDXL_STATUS_INTERVAL_SECONDS": str(status_interval_seconds),
        "SDXL_PENDING_GRACE_SECONDS": str(pending_grace_seconds),
        "SDXL_IMAGE_TRAIN": f"sdxl-operator/workload-gpu:{SANDBOX_IMAGE_TAG}",
        "SDXL_IMAGE_NVIDIA": f"sdxl-operator/workload-gpu:{SANDBOX_IMAGE_TAG}",
        "SDXL_IMAGE_CPU": f"sdxl-operator/workload-cpu:{SANDBOX_IMAGE_TAG}",
        "SDXL_IMAGE_NEURON": f"sdxl-operator/workload-neuron:{SANDBOX_IMAGE_TAG}",
        "SDXL_IMAGE_PULL_POLICY": "Never",
        "PYTHONUNBUFFERED": "1",
    })
    return env


def load_manifests(path: Path) -> list[dict[str, Any]]:
    """The objects of a YAML/JSON file (several documents allowed); ValueError naming the file if bad."""
    try:
        documents = list(yaml.safe_load_all(path.read_text(encoding="utf-8")))
    except (OSError, yaml.YAMLError) as exc:
        raise ValueError(f"{path}: cannot read it as YAML: {exc}") from exc
    objects = [doc for doc in documents if doc]
    for index, obj in enumerate(objects):
        if not isinstance(obj, dict) or not obj.get("apiVersion") or not obj.get("kind") or \
                not (obj.get("metadata") or {}).get("name"):
            raise ValueError(f"{path}: document {index + 1} is not a Kubernetes object "
                             "(apiVersion, kind and metadata.name are required)")
    return objects


class Sandbox:
    """Start with ``async with Sandbox(workdir) as sandbox:``; everything stops on exit.

    ``run_pods=False`` (real control plane only) starts no local executor: the nodes are registered
    and the scheduler binds pods to them, but nothing runs those pods or writes their status; the
    caller plays that part of the kubelet (the scale benchmark does). Their logs, for ``pods/log``,
    are whatever the caller writes to ``<workdir>/pods/<namespace>/<pod>/log.txt`` (empty if nothing).
    ``operator_args`` are added to the operator's command line (e.g. ``--quiet``, ``--liveness URL``).
    """

    def __init__(self, workdir: Path, *, threads: int = 2, status_interval_seconds: float = 1.0,
                 poll_seconds: float = 0.5, control_plane: str = "emulator", pending_grace_seconds: float = 60.0,
                 nodes: tuple[SimulatedNode, ...] = DEFAULT_NODES, run_pods: bool = True,
                 operator_args: tuple[str, ...] = ()) -> None:
        if control_plane not in CONTROL_PLANES:
            raise ValueError(f"control_plane must be one of {', '.join(CONTROL_PLANES)}, not {control_plane!r}")
        if not run_pods and control_plane != "real":
            raise ValueError("run_pods=False needs the real control plane (the emulator has no other Job controller)")
        self.run_pods = run_pods
        self.operator_args = operator_args
        self.control_plane = control_plane
        self.pending_grace_seconds = pending_grace_seconds
        self.nodes = nodes
        self.plane: ControlPlane | None = None
        self.chart: InstalledOperator | None = None
        self.kubelet_port = 0
        self.workdir = workdir.resolve()
        self.threads = threads
        self.status_interval_seconds = status_interval_seconds
        self.poll_seconds = poll_seconds
        self._exit = contextlib.AsyncExitStack()
        self._operators: dict[int, asyncio.subprocess.Process] = {}
        self.emulator: KubeEmulator | None = None
        self.server_url = ""
        self.executor: LocalExecutor | None = None
        self.client: KubeClient | None = None

    @property
    def kubeconfig(self) -> Path:
        return self.workdir / "kubeconfig"

    @property
    def operator_log(self) -> Path:
        return self.workdir / "operator.log"

    async def __aenter__(self) -> Sandbox:
        try:
            await self.start()
        except BaseException:
            await self.close()
            raise
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        if self.control_plane == "real":
            await self._start_real()
            return
        emulator, self.server_url = await self._exit.enter_async_context(serve_emulator())
        self.emulator = emulator
        write_kubeconfig(str(self.kubeconfig), self.server_url)
        self.client = KubeClient(self.server_url)
        self.executor = LocalExecutor(self.server_url, self.workdir, log_sink=emulator.append_pod_log,
                                      threads=self.threads, poll_seconds=self.poll_seconds)
        self.executor.start()
        await self.ensure_namespace("default")  # the artifact store's claim, which the operator checks
        await self.start_operator()

    async def _start_real(self) -> None:
        plane = self.plane = await self._exit.enter_async_context(ControlPlane(self.workdir / "control-plane"))
        self.server_url = plane.server_url
        self.kubeconfig.write_bytes(plane.admin_kubeconfig.read_bytes())
        self.kubeconfig.chmod(0o600)
        self.client = plane.admin_client()
        log_of: Callable[[str, str], tuple[Path, bool] | None] = self._pod_log_file
        if self.run_pods:
            self.executor = LocalExecutor(self.server_url, self.workdir, log_sink=lambda *_: None,
                                          threads=self.threads, poll_seconds=self.poll_seconds,
                                          client=plane.admin_client(),
                                          node_names=frozenset(node.name for node in self.nodes))
            log_of = self.executor.kubelet.log_of
        assert plane._ca is not None  # started
        serving = plane._ca.issue("kubelet", "sandbox-kubelet", server_names=("localhost",),
                                  server_addresses=(LOOPBACK,))
        self.kubelet_port = await self._exit.enter_async_context(serve_kubelet_endpoint(log_of, serving))
        for node in self.nodes:
            await register_node(self.client, node, self.kubelet_port)
        self.chart = await install_chart(self.client, SANDBOX_CHART_VALUES)
        await self.ensure_namespace("default")
        await plane.service_account_kubeconfig(self.chart.namespace, self.chart.service_account,
                                               self.workdir / "operator.kubeconfig")
        if self.executor is not None:
            self.executor.start()
        await self.start_operator()

    def _pod_log_file(self, namespace: str, name: str) -> tuple[Path, bool]:
        # Without the executor: the log the caller keeps for a pod it plays (none: an empty log).
        return self.workdir / "pods" / namespace / name / "log.txt", False

    async def ensure_namespace(self, name: str, *, artifact_claim: bool = True) -> None:
        """Create namespace ``name`` unless it exists, with the artifact store's claim unless told not to.

        The emulator keeps no Namespace objects worth creating; the claim it gets all the same, since the
        operator checks that the claims its pods mount exist.
        """
        if self.control_plane == "real":
            await ensure_namespace(self._client(), name)
        if artifact_claim:
            await self.ensure_claim(name, ARTIFACT_CLAIM)

    async def ensure_claim(self, namespace: str, claim: str) -> None:
        """A bound PersistentVolumeClaim ``claim`` in ``namespace`` (its files: ``<workdir>/pvcs/<claim>``)."""
        await ensure_claim(self._client(), namespace, claim, with_volume=self.control_plane == "real")

    async def close(self) -> None:
        """Stop the operators, every local process, and the API server."""
        for replica in sorted(self._operators, reverse=True):
            with contextlib.suppress(Exception):
                await self.stop_operator(replica)
        if self.executor is not None:
            with contextlib.suppress(Exception):
                await self.executor.close()
        if self.client is not None:
            with contextlib.suppress(Exception):
                await self.client.close()
        await self._exit.aclose()

    # ----- the operator -----

    def operator_log_of(self, replica: int) -> Path:
        """The log of operator process ``replica`` (0: :attr:`operator_log`)."""
        return self.operator_log if replica == 0 else self.workdir / f"operator-{replica}.log"

    async def start_operator(self, replica: int = 0, args: tuple[str, ...] | None = None) -> None:
        """Start ``sdxl-operator run`` against the API server (again, after :meth:`kill_operator`).

        ``replica`` above 0 starts a further operator process beside the first, as the chart's
        Deployment runs several replicas (on the real control plane they peer through the chart's
        peering object: only the newest started handles resources). ``args`` replace
        ``operator_args`` for this process (e.g. its own ``--metrics-port``).
        """
        running = self._operators.get(replica)
        if running is not None and running.returncode is None:
            return
        if self.chart is not None:
            arguments = [*installed_args(self.chart.args), "--log-format", "plain"]
        else:
            arguments = ["run", "--standalone", "--all-namespaces", "--log-format", "plain"]
        arguments += self.operator_args if args is None else args
        log = self.operator_log_of(replica).open("ab")
        try:
            self._operators[replica] = await asyncio.create_subprocess_exec(
                resolve_program("sdxl-operator"), *arguments,
                env=operator_environment(self.workdir, self.status_interval_seconds, self.chart,
                                         self.pending_grace_seconds),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log, stderr=log, start_new_session=True, preexec_fn=die_with_parent,
            )
        finally:
            log.close()

    @property
    def operator_pid(self) -> int | None:
        running = self._operators.get(0)
        return running.pid if running is not None and running.returncode is None else None

    def operator_exited(self, replica: int = 0) -> int | None:
        """The operator's exit code if it stopped on its own, else None."""
        running = self._operators.get(replica)
        return None if running is None else running.returncode

    async def kill_operator(self, replica: int = 0) -> None:
        """SIGKILL the operator, as a crashed or evicted operator pod would end."""
        running = self._operators.get(replica)
        if running is not None and running.returncode is None:
            running.send_signal(signal.SIGKILL)
            await running.wait()

    async def stop_operator(self, replica: int = 0) -> None:
        """SIGTERM the operator, as Kubernetes stops a pod; SIGKILL after a grace period."""
        running = self._operators.get(replica)
        if running is None or running.returncode is not None:
            return
        running.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(running.wait(), OPERATOR_STOP_SECONDS)
        except asyncio.TimeoutError:
            running.send_signal(signal.SIGKILL)
            await running.wait()

    # ----- the user's side -----

    def _client(self) -> KubeClient:
        if self.client is None:
            raise RuntimeError("the sandbox is not started")
        return self.client

    async def apply(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        """Create ``obj`` (namespace ``default`` unless given), as ``kubectl create`` would."""
        body = dict(obj)
        body["metadata"] = {"namespace": "default", **(obj.get("metadata") or {})}
        try:
            return await self._client().create(body)
        except ApiError as exc:
            if exc.status == 409:
                raise ValueError(f"{obj['kind']} {body['metadata']['namespace']}/{body['metadata']['name']} "
                                 "already exists") from exc
            raise

    async def apply_file(self, path: Path) -> list[dict[str, Any]]:
        return [await self.apply(obj) for obj in load_manifests(path)]

    async def patch(self, obj: Mapping[str, Any], changes: Mapping[str, Any]) -> dict[str, Any]:
        """Merge ``changes`` into ``obj`` (namespace ``default`` unless given), as ``kubectl patch --type merge``."""
        body = dict(obj)
        body["metadata"] = {"namespace": "default", **(obj.get("metadata") or {})}
        return await self._client().patch(body, changes)

    async def delete(self, obj: Mapping[str, Any]) -> None:
        body = dict(obj)
        body["metadata"] = {"namespace": "default", **(obj.get("metadata") or {})}
        await self._client().delete(body)

    async def get(self, resource: str, namespace: str, name: str) -> dict[str, Any] | None:
        """An object as the API server has it now (``resource`` e.g. ``batch/v1/jobs``), or None."""
        api_version, plural = resource.rsplit("/", 1)
        return await self._client().get(api_version, plural, namespace, name)

    async def list(self, resource: str, namespace: str | None = None) -> list[dict[str, Any]]:
        api_version, plural = resource.rsplit("/", 1)
        return await self._client().list(api_version, plural, namespace)

    async def status(self, resource: str, namespace: str, name: str) -> dict[str, Any]:
        """The ``status`` of an object ({} when it has none or does not exist)."""
        return dict((await self.get(resource, namespace, name) or {}).get("status") or {})

    async def wait_for_phase(self, resource: str, namespace: str, name: str, phase: str,
                             timeout: float) -> dict[str, Any]:
        """The status once ``status.phase`` is ``phase``.

        Raises RuntimeError with the failure at once when the object fails instead, and TimeoutError
        with the last status when time runs out.
        """

        async def check() -> dict[str, Any] | None:
            status = await self.status(resource, namespace, name)
            if status.get("phase") == "Failed" and phase != "Failed":
                raise RuntimeError(f"{name} failed: {status.get('failure')}")
            return status if status.get("phase") == phase else None

        try:
            return await self.wait_for(f"{name} to reach {phase}", check, timeout)
        except TimeoutError as exc:
            raise TimeoutError(f"{exc}; last status: {await self.status(resource, namespace, name)}; "
                               f"operator log: {self.operator_log}") from None

    def service_url(self, namespace: str, name: str) -> str | None:
        """A local URL for Service ``namespace/name`` (one of its ready pods), or None."""
        return self.executor.service_url(namespace, name) if self.executor is not None else None

    def local_processes(self) -> dict[tuple[str, str], int]:
        """(namespace, pod) -> pid of every workload process still running."""
        return self.executor.running_pids() if self.executor is not None else {}

    async def wait_for(self, what: str, check: Callable[[], T | Awaitable[T | None] | None], timeout: float) -> T:
        """Poll ``check`` (plain or async) until it returns something truthy; TimeoutError naming ``what`` otherwise."""
        deadline = time.monotonic() + timeout
        while True:
            value = check()
            if inspect.isawaitable(value):
                value = await value
            if value:
                return value
            if time.monotonic() > deadline:
                raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
            await asyncio.sleep(0.2)

