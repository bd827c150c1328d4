"""The whole product on one machine: API emulator, the real operator, and the local executor.

:class:`Sandbox` is what ``sdxl-operator sandbox`` and the end-to-end tests share:

* the API server is :func:`~sdxl_operator.sandbox.kube_emulator.serve_emulator` on a free loopback
  port (CRDs and built-in resources known), with a kubeconfig for it at ``<workdir>/kubeconfig``
  (``kubectl --kubeconfig`` works against it);
* the operator is the real one, ``sdxl-operator run --standalone --all-namespaces`` in its own process
  (its log: ``<workdir>/operator.log``), configured through the same environment variables Helm sets:
  artifact store ``pvc://sdxl-artifacts/store`` (a folder under ``<workdir>/pvcs``), a short status
  interval, and image names ending in ``:sandbox`` (the executor runs local code whatever the image);
* the local executor (:class:`~sdxl_operator.sandbox.local_executor.LocalExecutor`) runs the operator's
  Jobs and Deployments as local processes; their logs go to the emulator as pod logs and to
  ``<workdir>/pods/<namespace>/<pod>/log.txt``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml

from sdxl_operator.sandbox.api_client import ApiError, KubeClient
from sdxl_operator.sandbox.container_launch import resolve_program
from sdxl_operator.sandbox.kube_emulator import KubeEmulator, serve_emulator, write_kubeconfig
from sdxl_operator.sandbox.local_executor import LocalExecutor
from sdxl_operator.sandbox.local_process import die_with_parent

T = TypeVar("T")
FINETUNES = "sdxl.io/v1alpha1/sdxlfinetunes"
DEPLOYMENTS = "sdxl.io/v1alpha1/sdxldeployments"
SANDBOX_IMAGE_TAG = "sandbox"
OPERATOR_STOP_SECONDS = 10.0


def operator_environment(workdir: Path, status_interval_seconds: float) -> dict[str, str]:
    """The operator's settings in the sandbox (see ``sdxl_operator.settings``)."""
    env = {name: value for name, value in os.environ.items()
           if not name.startswith("SDXL_") and not name.startswith("KUBERNETES_")}
    env.update({
        "KUBECONFIG": str(workdir / "kubeconfig"),
        "SDXL_ARTIFACT_STORE": "pvc://sdxl-artifacts/store",
        "SDXL_STATUS_INTERVAL_SECONDS": str(status_interval_seconds),
        "SDXL_PENDING_GRACE_SECONDS": "60",
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
    """Start with ``async with Sandbox(workdir) as sandbox:``; everything stops on exit."""

    def __init__(self, workdir: Path, *, threads: int = 2, status_interval_seconds: float = 1.0,
                 poll_seconds: float = 0.5) -> None:
        self.workdir = workdir.resolve()
        self.threads = threads
        self.status_interval_seconds = status_interval_seconds
        self.poll_seconds = poll_seconds
        self._exit = contextlib.AsyncExitStack()
        self._operator: asyncio.subprocess.Process | None = None
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
        emulator, self.server_url = await self._exit.enter_async_context(serve_emulator())
        self.emulator = emulator
        write_kubeconfig(str(self.kubeconfig), self.server_url)
        self.client = KubeClient(self.server_url)
        self.executor = LocalExecutor(self.server_url, self.workdir, log_sink=emulator.append_pod_log,
                                      threads=self.threads, poll_seconds=self.poll_seconds)
        self.executor.start()
        await self.start_operator()

    async def close(self) -> None:
        """Stop the operator, every local process, and the API server."""
        with contextlib.suppress(Exception):
            await self.stop_operator()
        if self.executor is not None:
            with contextlib.suppress(Exception):
                await self.executor.close()
        if self.client is not None:
            with contextlib.suppress(Exception):
                await self.client.close()
        await self._exit.aclose()

    # ----- the operator -----

    async def start_operator(self) -> None:
        """Start ``sdxl-operator run`` against the emulator (again, after :meth:`kill_operator`)."""
        if self._operator is not None and self._operator.returncode is None:
            return
        log = self.operator_log.open("ab")
        try:
            self._operator = await asyncio.create_subprocess_exec(
                resolve_program("sdxl-operator"), "run", "--standalone", "--all-namespaces", "--log-format", "plain",
                env=operator_environment(self.workdir, self.status_interval_seconds), stdin=asyncio.subprocess.DEVNULL,
                stdout=log, stderr=log, start_new_session=True, preexec_fn=die_with_parent,
            )
        finally:
            log.close()

    @property
    def operator_pid(self) -> int | None:
        running = self._operator is not None and self._operator.returncode is None
        return self._operator.pid if running and self._operator is not None else None

    def operator_exited(self) -> int | None:
        """The operator's exit code if it stopped on its own, else None."""
        return None if self._operator is None else self._operator.returncode

    async def kill_operator(self) -> None:
        """SIGKILL the operator, as a crashed or evicted operator pod would end."""
        if self._operator is not None and self._operator.returncode is None:
            self._operator.send_signal(signal.SIGKILL)
            await self._operator.wait()

    async def stop_operator(self) -> None:
        if self._operator is None or self._operator.returncode is not None:
            return
        self._operator.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(self._operator.wait(), OPERATOR_STOP_SECONDS)
        except asyncio.TimeoutError:
            self._operator.send_signal(signal.SIGKILL)
            await self._operator.wait()

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

    def get(self, resource: str, namespace: str, name: str) -> dict[str, Any] | None:
        """An object as the API server has it now (``resource`` e.g. ``batch/v1/jobs``)."""
        assert self.emulator is not None, "the sandbox is not started"
        return self.emulator.live_object(resource, namespace, name)

    def list(self, resource: str, namespace: str | None = None) -> list[dict[str, Any]]:
        assert self.emulator is not None, "the sandbox is not started"
        return self.emulator.live_objects(resource, namespace)

    def status(self, resource: str, namespace: str, name: str) -> dict[str, Any]:
        """The ``status`` of an object ({} when it has none or does not exist)."""
        return dict((self.get(resource, namespace, name) or {}).get("status") or {})

    async def wait_for_phase(self, resource: str, namespace: str, name: str, phase: str,
                             timeout: float) -> dict[str, Any]:
        """The status once ``status.phase`` is ``phase``.

        Raises RuntimeError with the failure at once when the object fails instead, and TimeoutError
        with the last status when time runs out.
        """

        def check() -> dict[str, Any] | None:
            status = self.status(resource, namespace, name)
            if status.get("phase") == "Failed" and phase != "Failed":
                raise RuntimeError(f"{name} failed: {status.get('failure')}")
            return status if status.get("phase") == phase else None

        try:
            return await self.wait_for(f"{name} to reach {phase}", check, timeout)
        except TimeoutError as exc:
            raise TimeoutError(f"{exc}; last status: {self.status(resource, namespace, name)}; "
                               f"operator log: {self.operator_log}") from None

    def service_url(self, namespace: str, name: str) -> str | None:
        """A local URL for Service ``namespace/name`` (one of its ready pods), or None."""
        return self.executor.service_url(namespace, name) if self.executor is not None else None

    def local_processes(self) -> dict[tuple[str, str], int]:
        """(namespace, pod) -> pid of every workload process still running."""
        return self.executor.running_pids() if self.executor is not None else {}

    async def wait_for(self, what: str, check: Callable[[], T | None], timeout: float) -> T:
        """Poll ``check`` until it returns something truthy; TimeoutError naming ``what`` otherwise."""
        deadline = time.monotonic() + timeout
        while True:
            value = check()
            if value:
                return value
            if time.monotonic() > deadline:
                raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
            await asyncio.sleep(0.2)

