"""The local executor: the cluster components the operator's children need, with local processes.

Plays the Job controller (``job_controller``), the Deployment controller (``deployment_controller``),
kubelet (``kubelet``: containers as local processes) and Service routing (a Service resolves to the
loopback ports of its ready pods). It talks to the API server over HTTP like those components do,
polling every ``poll_seconds`` (half a second: quick enough for a demo, and nearly free of CPU, which
the workloads need).

Against the real control plane (``client`` authenticated to it, ``node_names`` set) the executor is
the kubelet of the simulated nodes and the Service routing only: kube-controller-manager runs the
Jobs, Deployments and ReplicaSets, and kube-scheduler binds the pods.

Not emulated against the emulator (the operator's workloads do not depend on them here): resource requests and limits
(nothing is reserved or capped), scheduling (node selectors, tolerations, GPU and Neuron requests:
every pod runs at once on this machine), image pulls (images are ignored; the code installed here
runs), init and sidecar containers (the first container of a pod runs), liveness and startup probes,
ReplicaSets (a Deployment owns its pods directly), and HorizontalPodAutoscalers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from sdxl_sandbox.api_client import KubeClient
from sdxl_sandbox.container_launch import LOOPBACK
from sdxl_sandbox.deployment_controller import DeploymentController
from sdxl_sandbox.job_controller import JobController
from sdxl_sandbox.kubelet import Kubelet

log = logging.getLogger("sdxl_sandbox")


def _matches(labels: Mapping[str, str], selector: Mapping[str, str]) -> bool:
    return bool(selector) and all(labels.get(key) == value for key, value in selector.items())


class LocalExecutor:
    """Runs the Jobs, Deployments and pods of the API server at ``server_url`` on this machine."""

    def __init__(self, server_url: str, workdir: Path, *, log_sink: Callable[[str, str, str], None],
                 threads: int = 2, poll_seconds: float = 0.5, client: KubeClient | None = None,
                 node_names: frozenset[str] | None = None) -> None:
        self._client = client if client is not None else KubeClient(server_url)
        self.kubelet = Kubelet(self._client, workdir, threads=threads, log_sink=log_sink,
                               on_stopping=self._reroute, node_names=node_names)
        # The real control plane runs its own Job and Deployment controllers.
        self._controllers = node_names is None
        self._jobs = JobController(self._client)
        self._deployments = DeploymentController(self._client, self._pod_ready)
        self._poll_seconds = poll_seconds
        self._services: dict[tuple[str, str], list[str]] = {}
        self._service_objects: list[dict[str, Any]] = []
        self._task: asyncio.Task[None] | None = None
        self.errors = 0

    def _pod_ready(self, pod: Mapping[str, Any]) -> bool:
        run = self.kubelet.runs.get(str(pod["metadata"].get("uid")))
        return run is not None and run.ready

    async def sync_once(self) -> None:
        """One pass of every component."""
        if self._controllers:
            jobs = await self._client.list("batch/v1", "jobs")
            deployments = await self._client.list("apps/v1", "deployments")
            pods = await self._client.list("v1", "pods")
            await self._jobs.sync(jobs, pods)
            await self._deployments.sync(deployments, pods)
        await self.kubelet.sync(await self._client.list("v1", "pods"))
        self._route_services(await self._client.list("v1", "services"))

    def _reroute(self) -> None:
        # A pod is going away: stop sending to it before its process gets SIGTERM.
        self._route_services(self._service_objects)

    def _route_services(self, services: list[dict[str, Any]]) -> None:
        self._service_objects = services
        routes: dict[tuple[str, str], list[str]] = {}
        for service in services:
            meta, spec = service["metadata"], service.get("spec") or {}
            ports = spec.get("ports") or []
            if not ports:
                continue
            target = str(ports[0].get("targetPort", ports[0].get("port")))
            urls = []
            for run in self.kubelet.runs.values():
                pod_meta = run.pod["metadata"]
                if pod_meta.get("namespace") == meta.get("namespace") and run.ready and \
                        _matches(pod_meta.get("labels") or {}, spec.get("selector") or {}) and target in run.ports:
                    urls.append(f"http://{LOOPBACK}:{run.ports[target]}")
            routes[(str(meta.get("namespace")), str(meta["name"]))] = sorted(urls)
        self._services = routes

    def service_url(self, namespace: str, name: str) -> str | None:
        """A local URL of one ready pod behind Service ``namespace/name``, or None."""
        urls = self._services.get((namespace, name)) or []
        return urls[0] if urls else None

    def running_pids(self) -> dict[tuple[str, str], int]:
        return self.kubelet.running_pids()

    async def run(self) -> None:
        """Reconcile until cancelled; an API error is logged and retried on the next pass."""
        while True:
            try:
                await self.sync_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # keep playing the cluster; the next pass retries
                self.errors += 1
                log.warning("local executor pass failed: %s", exc)
            await asyncio.sleep(self._poll_seconds)

    def start(self) -> None:
        self._task = asyncio.create_task(self.run())

    async def close(self) -> None:
        """Stop reconciling and stop every local process."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.kubelet.close()
        await self._client.close()
