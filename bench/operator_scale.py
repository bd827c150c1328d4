"""The operator at scale: N SDXLFineTunes created at once against the API emulator.

The API server is the emulator (``sdxl_operator.sandbox.kube_emulator``) on 127.0.0.1 in this
process; the operator is the real ``sdxl-operator run --standalone --all-namespaces`` in a
subprocess (so its memory is its own), found through a kubeconfig. After the operator answers its
liveness probe, N fine-tunes are POSTed concurrently, and the bench measures:

* ``jobs_s`` — until all N training Jobs (and their spec ConfigMaps) exist;
* ``statuses_s`` — until every fine-tune has its first status written (phase, trainingJob);
* ``succeeded_s`` — then, playing the Job controller and kubelet, every Job is marked Complete
  with a termination message at once; until every status is Succeeded with its artifacts (this
  goes through the status timer, interval ``--interval`` seconds);
* ``peak_rss_mb`` — the operator process's peak resident memory, sampled every 50 ms;
* the CPU time the operator and the emulator used until every status was written: on a shared
  two-core machine the wall-clock numbers depend on the load, these much less.

Targets: all N Jobs and statuses within 20 s, peak RSS under 250 MB (N = 200).

    .venv/bin/python bench/operator_scale.py               # 200 fine-tunes
    .venv/bin/python bench/operator_scale.py --count 50    # quick look

Results: a table on stdout and JSON in bench/results/operator_scale.json (or --json).

The SDXLDeployment side (200 deployments over 50 fine-tunes, compiles shared per key) is
``bench/operator_scale_deployments.py``, built on this file's helpers.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import kmock
import psutil

from sdxl_operator.sandbox.kube_emulator import KubeEmulator, serve_emulator, write_kubeconfig

REPO = Path(__file__).resolve().parents[1]
NAMESPACE = "bench"
FINETUNES = "sdxl.io/v1alpha1/sdxlfinetunes"
SPEC = {
    "baseModel": "builtin:tiny",
    "instanceImages": "builtin:sample-subject",
    "instancePrompt": "a photo of sks person",
    "resources": {"gpus": 0, "cpu": "1", "memory": "1Gi"},
}
TARGET_SECONDS = 20.0
TARGET_RSS_MB = 250.0


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


async def wait_until(check: Any, timeout: float, what: str) -> float:
    start = time.monotonic()
    while not check():
        if time.monotonic() - start > timeout:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.2)
    return time.monotonic() - start


async def wait_for_liveness(url: str, process: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"the operator exited with code {process.returncode}")
            try:
                async with session.get(url) as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    raise TimeoutError("the operator never answered its liveness probe")


def _live(emulator: KubeEmulator, resource: str) -> list[dict[str, Any]]:
    # Read without copying: the emulator serves the operator from this same event loop.
    wanted = kmock.resource(resource)
    return [obj.raw for (res, ns, _), obj in list(emulator.objects.items())
            if res == wanted and ns == NAMESPACE and not obj.deleted]


def count_live(emulator: KubeEmulator, resource: str) -> int:
    return len(_live(emulator, resource))


def statuses(emulator: KubeEmulator) -> list[dict[str, Any]]:
    return [obj.get("status") or {} for obj in _live(emulator, FINETUNES)]


async def complete_all(session: aiohttp.ClientSession, base: str, count: int) -> None:
    """Play the Job controller and kubelet: one finished pod and a Complete condition per Job."""
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    semaphore = asyncio.Semaphore(32)

    async def one(index: int) -> None:
        job = f"ft-{index:03d}-train"
        result = {"status": "Succeeded", "artifacts": {"lora": f"s3://bench/{job}/lora.safetensors"},
                  "metrics": {"steps": 500, "finalLoss": 0.1, "loraSha256": "ab" * 32}}
        pod = {"apiVersion": "v1", "kind": "Pod",
               "metadata": {"name": f"{job}-x", "namespace": NAMESPACE,
                            "labels": {"batch.kubernetes.io/job-name": job, "job-name": job}},
               "status": {"phase": "Succeeded", "containerStatuses": [{"name": "trainer", "state": {"terminated": {
                   "exitCode": 0, "reason": "Completed", "message": json.dumps(result)}}}]}}
        async with semaphore:
            async with session.post(f"{base}/api/v1/namespaces/{NAMESPACE}/pods", json=pod) as response:
                response.raise_for_status()
            status = {"status": {"startTime": now, "completionTime": now, "succeeded": 1, "conditions": [
                {"type": "Complete", "status": "True", "lastTransitionTime": now}]}}
            async with session.patch(f"{base}/apis/batch/v1/namespaces/{NAMESPACE}/jobs/{job}/status",
                                     json=status) as response:
                response.raise_for_status()

    await asyncio.gather(*(one(index) for index in range(count)))


async def bench(count: int, interval: float, timeout: float) -> dict[str, Any]:
    async with serve_emulator() as (emulator, url):
        workdir = Path(tempfile.mkdtemp(prefix="sdxl-operator-scale-"))
        kubeconfig = workdir / "kubeconfig"
        write_kubeconfig(str(kubeconfig), url)
        port = free_port()
        env = {**os.environ, "KUBECONFIG": str(kubeconfig), "SDXL_STATUS_INTERVAL_SECONDS": str(interval)}
        env.pop("KUBERNETES_SERVICE_HOST", None)
        log_path = workdir / "operator.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "sdxl_operator.cli", "run", "--standalone", "--all-namespaces", "--quiet",
                 "--liveness", f"http://127.0.0.1:{port}/healthz"],
                env=env, stdout=log, stderr=subprocess.STDOUT, cwd=REPO,
            )
        stop = asyncio.Event()
        sampler = RssSampler(process.pid)
        sampling = asyncio.create_task(sampler.run(stop))
        try:
            await wait_for_liveness(f"http://127.0.0.1:{port}/healthz", process)
            idle_rss = sampler.peak
            connector = aiohttp.TCPConnector(limit=32)
            async with aiohttp.ClientSession(connector=connector) as session:
                started = time.monotonic()
                cpu_before = sampler.cpu_seconds
                bench_cpu_before = time.process_time()

                async def create(index: int) -> None:
                    body = {"apiVersion": "sdxl.io/v1alpha1", "kind": "SDXLFineTune",
                            "metadata": {"name": f"ft-{index:03d}", "namespace": NAMESPACE}, "spec": SPEC}
                    path = f"{url}/apis/sdxl.io/v1alpha1/namespaces/{NAMESPACE}/sdxlfinetunes"
                    async with session.post(path, json=body) as response:
                        response.raise_for_status()

                await asyncio.gather(*(create(index) for index in range(count)))
                created_s = time.monotonic() - started
                await wait_until(lambda: count_live(emulator, "batch/v1/jobs") >= count
                                 and count_live(emulator, "v1/configmaps") >= count, timeout, "the Jobs")
                jobs_s = time.monotonic() - started
                await wait_until(lambda: sum(1 for s in statuses(emulator) if s.get("trainingJob")) >= count,
                                 timeout, "the first statuses")
                statuses_s = time.monotonic() - started
                operator_cpu_s = sampler.cpu_seconds - cpu_before
                emulator_cpu_s = time.process_time() - bench_cpu_before

                completing = time.monotonic()
                await complete_all(session, url, count)
                await wait_until(lambda: sum(1 for s in statuses(emulator)
                                             if s.get("phase") == "Succeeded" and s.get("artifacts")) >= count,
                                 timeout, "every status Succeeded")
                succeeded_s = time.monotonic() - completing
            duplicates = count_live(emulator, "batch/v1/jobs") - count
        finally:
            stop.set()
            await sampling
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
        return {
            "count": count,
            "status_interval_s": interval,
            "create_requests_s": round(created_s, 2),
            "jobs_s": round(jobs_s, 2),
            "statuses_s": round(statuses_s, 2),
            "succeeded_s": round(succeeded_s, 2),
            "operator_cpu_s_until_statuses": round(operator_cpu_s, 2),
            "emulator_cpu_s_until_statuses": round(emulator_cpu_s, 2),
            "idle_rss_mb": round(idle_rss / 2**20, 1),
            "peak_rss_mb": round(sampler.peak / 2**20, 1),
            "duplicate_jobs": duplicates,
            "operator_log": str(log_path),
        }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=200, help="fine-tunes created at once")
    parser.add_argument("--interval", type=float, default=10.0,
                        help="operator status interval, seconds (the production default)")
    parser.add_argument("--timeout", type=float, default=120.0, help="give up after this many seconds per stage")
    parser.add_argument("--json", type=Path, default=REPO / "bench" / "results" / "operator_scale.json")
    args = parser.parse_args(argv)

    result = asyncio.run(bench(args.count, args.interval, args.timeout))
    result.update({
        "targets": {"jobs_and_statuses_s": TARGET_SECONDS, "peak_rss_mb": TARGET_RSS_MB},
        "met": result["statuses_s"] < TARGET_SECONDS and result["peak_rss_mb"] < TARGET_RSS_MB,
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform()},
    })
    rows = [
        ("fine-tunes created at once", f"{result['count']}"),
        ("all create requests answered", f"{result['create_requests_s']:.2f} s"),
        ("all Jobs + ConfigMaps exist", f"{result['jobs_s']:.2f} s"),
        ("every status written", f"{result['statuses_s']:.2f} s  (target < {TARGET_SECONDS:.0f} s)"),
        (f"all Succeeded after Jobs complete (timer {args.interval:g} s)", f"{result['succeeded_s']:.2f} s"),
        ("operator CPU time until then", f"{result['operator_cpu_s_until_statuses']:.2f} s"),
        ("emulator + bench CPU time until then", f"{result['emulator_cpu_s_until_statuses']:.2f} s"),
        ("operator RSS when idle", f"{result['idle_rss_mb']:.1f} MB"),
        ("operator peak RSS", f"{result['peak_rss_mb']:.1f} MB  (target < {TARGET_RSS_MB:.0f} MB)"),
        ("duplicate Jobs", f"{result['duplicate_jobs']}"),
    ]
    width = max(len(name) for name, _ in rows)
    print(f"{'measure':<{width}}  value")
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    print(f"targets met: {'yes' if result['met'] else 'NO'}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
