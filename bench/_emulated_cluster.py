"""What both operator-at-scale benchmarks share: the API emulator, the real operator in a subprocess
found through a kubeconfig, its memory sampled, and this process playing the Job and Deployment
controllers.

``bench/operator_scale.py`` (fine-tunes) and ``bench/operator_scale_deployments.py`` (deployments)
drive their scenarios through ``emulated_cluster``; the bench's own CPU time is this process's,
since the emulator serves the operator from the same event loop.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import kmock
import psutil

from sdxl_sandbox.kube_emulator import KubeEmulator, serve_emulator, write_kubeconfig
from sdxl_sandbox.sandbox import ARTIFACT_CLAIM

T = TypeVar("T")
REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
FINETUNES = "sdxl.io/v1alpha1/sdxlfinetunes"
DEPLOYMENTS = "sdxl.io/v1alpha1/sdxldeployments"
FINETUNE_SPEC = {
    "baseModel": "builtin:tiny",
    "instanceImages": "builtin:sample-subject",
    "instancePrompt": "a photo of sks person",
    "resources": {"gpus": 0, "cpu": "1", "memory": "1Gi"},
}
# Requests in flight at once from the bench: enough to load the operator, few enough not to
# exhaust the emulator's sockets.
CONCURRENCY = 32
# The bench's own requests carry this User-Agent, so the emulator's request count tells them apart
# from the operator's (Kopf and the handlers' API client each send their own).
BENCH_AGENT = "sdxl-bench"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RssSampler:
    """Samples the resident memory of a process (and its children) until stopped; keeps the peak."""

    def __init__(self, pid: int) -> None:
        self.process = psutil.Process(pid)
        self.peak = 0
        self.cpu_seconds = 0.0

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                total = self.process.memory_info().rss + sum(
                    child.memory_info().rss for child in self.process.children(recursive=True))
            except psutil.Error:
                return
            self.peak = max(self.peak, total)
            with contextlib.suppress(psutil.Error):
                times = self.process.cpu_times()
                self.cpu_seconds = times.user + times.system
            await asyncio.sleep(0.05)


async def wait_until(check: Callable[[], bool], timeout: float, what: str) -> float:
    start = time.monotonic()
    while not check():
        if time.monotonic() - start > timeout:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.2)
    return time.monotonic() - start


async def wait_for_liveness(url: str, exit_code: Callable[[], int | None], timeout: float = 60.0) -> None:
    """Until the operator answers ``url``; RuntimeError once ``exit_code()`` says it stopped."""
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            if (code := exit_code()) is not None:
                raise RuntimeError(f"the operator exited with code {code}")
            try:
                async with session.get(url) as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    raise TimeoutError("the operator never answered its liveness probe")


@dataclass
class EmulatedCluster:
    """A running emulator and operator, and a client session to play the other controllers with."""

    emulator: KubeEmulator
    url: str
    namespace: str
    session: aiohttp.ClientSession
    sampler: RssSampler
    idle_rss: int
    log_path: Path
    semaphore: asyncio.Semaphore

    def live(self, resource: str) -> list[dict[str, Any]]:
        # Read without copying: the emulator serves the operator from this same event loop.
        wanted = kmock.resource(resource)
        return [obj.raw for (res, ns, _), obj in list(self.emulator.objects.items())
                if res == wanted and ns == self.namespace and not obj.deleted]

    def count_phase(self, resource: str, phase: str, also: str | None = None) -> int:
        """How many objects of ``resource`` have ``status.phase == phase`` (and a truthy ``status[also]``)."""
        return sum(1 for obj in self.live(resource)
                   if (status := obj.get("status") or {}).get("phase") == phase
                   and (also is None or status.get(also)))

    async def post(self, path: str, body: dict[str, Any]) -> None:
        async with self.semaphore, self.session.post(f"{self.url}{path}", json=body) as response:
            response.raise_for_status()

    async def create_finetunes(self, names: list[str]) -> None:
        await asyncio.gather(*(self.post(
            f"/apis/sdxl.io/v1alpha1/namespaces/{self.namespace}/sdxlfinetunes",
            {"apiVersion": "sdxl.io/v1alpha1", "kind": "SDXLFineTune",
             "metadata": {"name": name, "namespace": self.namespace}, "spec": FINETUNE_SPEC})
            for name in names))

    async def finish_job(self, job: str, container: str, result: dict[str, Any]) -> None:
        """Play the Job controller and kubelet: one finished pod and a Complete condition."""
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        pod = {"apiVersion": "v1", "kind": "Pod",
               "metadata": {"name": f"{job}-x", "namespace": self.namespace,
                            "labels": {"batch.kubernetes.io/job-name": job, "job-name": job}},
               "status": {"phase": "Succeeded", "containerStatuses": [{"name": container, "state": {"terminated": {
                   "exitCode": 0, "reason": "Completed", "message": json.dumps(result)}}}]}}
        status = {"status": {"startTime": now, "completionTime": now, "succeeded": 1,
                             "conditions": [{"type": "Complete", "status": "True", "lastTransitionTime": now}]}}
        async with self.semaphore:
            async with self.session.post(f"{self.url}/api/v1/namespaces/{self.namespace}/pods",
                                         json=pod) as response:
                response.raise_for_status()
            async with self.session.patch(
                    f"{self.url}/apis/batch/v1/namespaces/{self.namespace}/jobs/{job}/status",
                    json=status) as response:
                response.raise_for_status()

    async def roll_out(self, deployment: dict[str, Any]) -> None:
        """Play the Deployment controller: every replica runs the current template and is available."""
        name, replicas = deployment["metadata"]["name"], deployment["spec"].get("replicas", 1)
        status = {"status": {"observedGeneration": deployment["metadata"].get("generation", 1),
                             "replicas": replicas, "updatedReplicas": replicas, "readyReplicas": replicas,
                             "availableReplicas": replicas}}
        path = f"{self.url}/apis/apps/v1/namespaces/{self.namespace}/deployments/{name}/status"
        async with self.semaphore, self.session.patch(path, json=status) as response:
            response.raise_for_status()


@contextlib.asynccontextmanager
async def emulated_cluster(namespace: str, interval: float, extra_env: dict[str, str] | None = None,
                           *, quiet: bool = True) -> AsyncIterator[EmulatedCluster]:
    """The emulator in this process and ``sdxl-operator run --standalone --all-namespaces`` in a
    subprocess (so its memory is its own), live once it answers its liveness probe; ``quiet=False``
    runs it at the default log level."""
    async with serve_emulator() as (emulator, url):
        workdir = Path(tempfile.mkdtemp(prefix="sdxl-operator-scale-"))
        kubeconfig = workdir / "kubeconfig"
        write_kubeconfig(str(kubeconfig), url)
        port = free_port()
        env = {**os.environ, "KUBECONFIG": str(kubeconfig), "SDXL_STATUS_INTERVAL_SECONDS": str(interval),
               **(extra_env or {})}
        # In a pod, the operator would otherwise prefer the in-cluster config over the kubeconfig.
        env.pop("KUBERNETES_SERVICE_HOST", None)
        log_path = workdir / "operator.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "sdxl_operator.cli", "run", "--standalone", "--all-namespaces",
                 *(("--quiet",) if quiet else ()), "--liveness", f"http://127.0.0.1:{port}/healthz"],
                env=env, stdout=log, stderr=subprocess.STDOUT, cwd=REPO,
            )
        stop = asyncio.Event()
        sampler = RssSampler(process.pid)
        sampling = asyncio.create_task(sampler.run(stop))
        try:
            await wait_for_liveness(f"http://127.0.0.1:{port}/healthz", process.poll)
            async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=CONCURRENCY),
                                             headers={"User-Agent": BENCH_AGENT}) as session:
                cluster = EmulatedCluster(emulator=emulator, url=url, namespace=namespace, session=session,
                                          sampler=sampler, idle_rss=sampler.peak, log_path=log_path,
                                          semaphore=asyncio.Semaphore(CONCURRENCY))
                # The operator's default artifact store is this claim; it waits for the claim to exist.
                await cluster.post(f"/api/v1/namespaces/{namespace}/persistentvolumeclaims", {
                    "apiVersion": "v1", "kind": "PersistentVolumeClaim",
                    "metadata": {"name": ARTIFACT_CLAIM, "namespace": namespace},
                    "spec": {"accessModes": ["ReadWriteMany"], "resources": {"requests": {"storage": "100Gi"}}}})
                yield cluster
        finally:
            stop.set()
            await sampling
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()


def scale_arguments(parser: argparse.ArgumentParser, *, timeout: float, json_name: str) -> None:
    """The options both scale benchmarks take."""
    parser.add_argument("--interval", type=float, default=10.0,
                        help="operator status interval, seconds (the production default)")
    parser.add_argument("--timeout", type=float, default=timeout, help="give up after this many seconds per stage")
    parser.add_argument("--json", type=Path, default=RESULTS / json_name)


def megabytes(size: int) -> float:
    return round(size / 2**20, 1)


def run_stopping_on_sigterm(coroutine: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run(coroutine)``, with SIGTERM (``timeout``, ``kill``) stopping it as Ctrl-C does: the
    coroutine is cancelled, so the cluster it started (control plane, operator) is stopped too,
    instead of being left running when the bench is killed."""
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    return asyncio.run(coroutine)


def machine() -> dict[str, Any]:
    return {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform()}


def report(result: dict[str, Any], rows: list[tuple[str, str]], json_path: Path) -> None:
    """Print the table of ``rows``, whether the targets were met, and write ``result`` as JSON."""
    width = max(len(name) for name, _ in rows)
    print(f"{'measure':<{width}}  value")
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    print(f"targets met: {'yes' if result['met'] else 'NO'}")
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {json_path}")
