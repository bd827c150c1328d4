"""The scale benchmarks on the real control plane: kube-apiserver, kube-controller-manager,
kube-scheduler and etcd (``sdxl_sandbox.control_plane``), the Helm chart installed, and the
real operator in a subprocess running as the chart's ServiceAccount, with the chart's arguments.

It is ``Sandbox(control_plane="real", run_pods=False)``: nothing runs the pods. Kubernetes' own Job
controller creates them and the scheduler binds them to one large simulated CPU node
(:data:`BENCH_NODE`, room for 1000 pods); this process plays the rest of the kubelet, the part
the operator reads: it writes each pod's status (``pods/status``) as Succeeded, with its container
terminated and the workload's JSON result as the termination message, so the Job controller
completes the Job. The pods' logs (``pods/log``, proxied by the API server to the sandbox's kubelet
endpoint) are empty.

The bench talks to the API server with its own keep-alive HTTPS session as the cluster admin. The
CPU time of the control plane (the four processes) is measured beside the operator's.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import psutil

from _emulated_cluster import (
    BENCH_AGENT,
    CONCURRENCY,
    FINETUNE_SPEC,
    RssSampler,
    free_port,
    wait_for_liveness,
)
from sdxl_sandbox.kubeconfig import read_kubeconfig, ssl_context
from sdxl_sandbox.sandbox import Sandbox
from sdxl_sandbox.simulated_nodes import SimulatedNode

# One CPU node with room for every bench pod: the default nodes allow 110 pods and 32 CPUs each.
# operator_at_rest.py's 1,000 CPU servers ask for 4 CPUs and 16 GiB each, beside the running Jobs' pods.
BENCH_NODE = SimulatedNode("bench-cpu", "m6i.metal", {"cpu": "5000", "memory": "20Ti", "pods": "1500"})
CONTROL_PLANE_PROCESSES = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler")
MANAGED = "app.kubernetes.io/managed-by=sdxl-operator"
# Polling the API server costs it CPU, which is measured: a little coarser than the emulator's 0.2 s.
POLL_SECONDS = 0.25


def now_rfc3339() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def program(process: psutil.Process) -> str:
    """The file name of the program a process runs ('' if gone); ``name()`` is cut at 15 characters."""
    with contextlib.suppress(psutil.Error, IndexError):
        return Path(process.cmdline()[0]).name
    return ""


def control_plane_cpu_seconds(processes: list[psutil.Process]) -> float:
    total = 0.0
    for process in processes:
        with contextlib.suppress(psutil.Error):
            times = process.cpu_times()
            total += times.user + times.system
    return total


async def poll_until(check: Callable[[], Awaitable[bool]], timeout: float, what: str) -> float:
    start = time.monotonic()
    while not await check():
        if time.monotonic() - start > timeout:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(POLL_SECONDS)
    return time.monotonic() - start


@dataclass
class RealCluster:
    """A running control plane and operator, and an admin session to play the kubelet with."""

    sandbox: Sandbox
    namespace: str
    session: aiohttp.ClientSession
    url: str
    sampler: RssSampler
    idle_rss: int
    control_plane: list[psutil.Process]
    semaphore: asyncio.Semaphore

    @property
    def log_path(self) -> Path:
        return self.sandbox.operator_log

    def control_plane_cpu(self) -> float:
        return control_plane_cpu_seconds(self.control_plane)

    async def request(self, method: str, path: str, body: object = None,
                      content_type: str = "application/json", params: dict[str, str] | None = None) -> Any:
        async with self.semaphore, self.session.request(
                method, f"{self.url}{path}", json=body, params=params,
                headers={"Content-Type": content_type}) as response:
            text = await response.text()
            if response.status >= 300:
                raise RuntimeError(f"{method} {path}: HTTP {response.status}: {text[:500]}")
            return json.loads(text) if text else None

    async def list_objects(self, path: str, selector: str | None = None) -> list[dict[str, Any]]:
        answer = await self.request("GET", path, params={"labelSelector": selector} if selector else None)
        return list(answer.get("items") or [])

    async def finetunes(self) -> list[dict[str, Any]]:
        return await self.list_objects(f"/apis/sdxl.io/v1alpha1/namespaces/{self.namespace}/sdxlfinetunes")

    async def jobs(self) -> list[dict[str, Any]]:
        return await self.list_objects(f"/apis/batch/v1/namespaces/{self.namespace}/jobs", MANAGED)

    async def configmaps(self) -> list[dict[str, Any]]:
        return await self.list_objects(f"/api/v1/namespaces/{self.namespace}/configmaps", MANAGED)

    async def pods(self) -> list[dict[str, Any]]:
        return await self.list_objects(f"/api/v1/namespaces/{self.namespace}/pods", MANAGED)

    async def warning_events(self) -> dict[str, dict[str, Any]]:
        """The namespace's Warning events by reason: how many, on which kinds, and one message."""
        found: dict[str, dict[str, Any]] = {}
        for event in await self.list_objects(f"/api/v1/namespaces/{self.namespace}/events"):
            if event.get("type") != "Warning":
                continue
            entry = found.setdefault(str(event.get("reason")), {"count": 0, "kinds": [], "example": event.get("message")})
            entry["count"] += int(event.get("count") or 1)
            kind = (event.get("involvedObject") or {}).get("kind")
            if kind not in entry["kinds"]:
                entry["kinds"].append(kind)
        return found

    async def create_finetunes(self, names: list[str]) -> None:
        await asyncio.gather(*(self.request(
            "POST", f"/apis/sdxl.io/v1alpha1/namespaces/{self.namespace}/sdxlfinetunes",
            {"apiVersion": "sdxl.io/v1alpha1", "kind": "SDXLFineTune",
             "metadata": {"name": name, "namespace": self.namespace}, "spec": FINETUNE_SPEC})
            for name in names))

    async def finish_pod(self, pod: dict[str, Any], result: dict[str, Any]) -> None:
        """Play the kubelet: the pod's one container ran and exited 0 with ``result`` as its message."""
        now = now_rfc3339()
        container = pod["spec"]["containers"][0]
        conditions = [{"type": kind, "status": status, "lastTransitionTime": now} for kind, status in (
            ("PodScheduled", "True"), ("Initialized", "True"), ("ContainersReady", "False"), ("Ready", "False"))]
        status = {"phase": "Succeeded", "startTime": now, "conditions": conditions,
                  "containerStatuses": [{
                      "name": container["name"], "image": container.get("image", ""), "imageID": "",
                      "ready": False, "started": False, "restartCount": 0,
                      "state": {"terminated": {"exitCode": 0, "reason": "Completed", "message": json.dumps(result),
                                               "startedAt": now, "finishedAt": now,
                                               "containerID": f"bench://{pod['metadata']['uid']}"}}}]}
        await self.request("PATCH", f"/api/v1/namespaces/{self.namespace}/pods/{pod['metadata']['name']}/status",
                           {"status": status}, content_type="application/merge-patch+json")


@contextlib.asynccontextmanager
async def real_cluster(namespace: str, interval: float, *, quiet: bool = True) -> AsyncIterator[RealCluster]:
    """The control plane, the chart, namespace ``namespace`` with the artifact store's claim, and the
    operator (live once it answers its liveness probe), all stopped on exit; ``quiet=False`` runs the
    operator at the default log level."""
    workdir = Path(tempfile.mkdtemp(prefix="sdxl-operator-scale-real-"))
    port = free_port()
    liveness = f"http://127.0.0.1:{port}/healthz"
    before = {child.pid for child in psutil.Process().children(recursive=True)}
    # The operator's production pending grace period (120 s): the bench's pods stay Pending until done.
    sandbox = Sandbox(workdir, control_plane="real", run_pods=False, nodes=(BENCH_NODE,),
                      status_interval_seconds=interval, pending_grace_seconds=120.0,
                      operator_args=(*(("--quiet",) if quiet else ()), "--liveness", liveness))
    try:
        async with sandbox:
            pid = sandbox.operator_pid
            assert pid is not None
            stop = asyncio.Event()
            sampler = RssSampler(pid)
            sampling = asyncio.create_task(sampler.run(stop))
            try:
                await sandbox.ensure_namespace(namespace)  # returns once its claim is Bound
                await wait_for_liveness(liveness, sandbox.operator_exited)
                control_plane = [child for child in psutil.Process().children(recursive=True)
                                 if child.pid not in before and program(child) in CONTROL_PLANE_PROCESSES]
                credentials = read_kubeconfig(sandbox.kubeconfig)
                tls = ssl_context(credentials)
                assert tls is not None  # the API server serves HTTPS only
                connector = aiohttp.TCPConnector(limit=CONCURRENCY, ssl=tls)
                async with aiohttp.ClientSession(connector=connector, headers={"User-Agent": BENCH_AGENT}) as session:
                    yield RealCluster(sandbox=sandbox, namespace=namespace, session=session, url=credentials.server,
                                      sampler=sampler, idle_rss=sampler.peak, control_plane=control_plane,
                                      semaphore=asyncio.Semaphore(CONCURRENCY))
            finally:
                stop.set()
                await sampling
    finally:
        # Keep the operator's log (the JSON names it) and the control plane's logs; drop etcd's data.
        shutil.rmtree(workdir / "control-plane" / "etcd", ignore_errors=True)
