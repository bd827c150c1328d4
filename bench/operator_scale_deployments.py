"""The SDXLDeployment controller at scale: 200 SDXLDeployments over 50 fine-tunes, against the API emulator.

Same setup as ``operator_scale.py`` (whose helpers this reuses): the emulator in this process, the real
``sdxl-operator run --standalone --all-namespaces`` in a subprocess found through a kubeconfig, and
this script playing the Job and Deployment controllers. Steps:

1. ``--finetunes`` fine-tunes (tiny model) are created and their training Jobs marked Complete with
   a LoRA and its sha256; wait until all are Succeeded.
2. ``--count`` SDXLDeployments are created at once, spread evenly over the fine-tunes and over two
   LoRA scales, so each compile key is shared by ``count / (2 x finetunes)`` deployments: the
   operator must start exactly one compile Job per key (``compile_jobs`` vs ``expected_compile_jobs``).
   ``compiling_s``: until every deployment reports phase Compiling.
3. Every compile Job is marked Complete at once (a finished pod with the compile result).
   ``deployments_s``: from then until all Deployments and Services exist (through the status timer,
   interval ``--interval`` seconds: the production default is 10).
4. Every Deployment's status is set to rolled out and available. ``ready_s``: until every
   SDXLDeployment is phase Ready with its URL.

``peak_rss_mb``: the operator process's peak resident memory over the whole run, sampled every 50 ms.
Targets: ``deployments_s`` < 30 s and peak RSS < 300 MB (200 deployments, 50 fine-tunes).

    .venv/bin/python bench/operator_scale_deployments.py
    .venv/bin/python bench/operator_scale_deployments.py --count 40 --finetunes 10   # quick look

Results: a table on stdout and JSON in bench/results/operator_scale_deployments.json (or --json).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

from operator_scale import RssSampler, free_port, wait_for_liveness, wait_until
from sdxl_operator.sandbox.kube_emulator import serve_emulator, write_kubeconfig

REPO = Path(__file__).resolve().parents[1]
NAMESPACE = "bench-serving"
FINETUNE_SPEC = {"baseModel": "builtin:tiny", "instanceImages": "builtin:sample-subject",
                 "instancePrompt": "a photo of sks person", "resources": {"gpus": 0, "cpu": "1", "memory": "1Gi"}}
SCALES = (1.0, 0.8)
TARGET_SECONDS = 30.0
TARGET_RSS_MB = 300.0
NOW = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def live(emulator: Any, resource: str) -> list[dict[str, Any]]:
    import kmock

    wanted = kmock.resource(resource)
    return [obj.raw for (res, ns, _), obj in list(emulator.objects.items())
            if res == wanted and ns == NAMESPACE and not obj.deleted]


async def finish_job(session: aiohttp.ClientSession, base: str, job: str, container: str, result: dict[str, Any],
                     semaphore: asyncio.Semaphore) -> None:
    """Play the Job controller and kubelet: one finished pod and a Complete condition."""
    pod = {"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": f"{job}-x", "namespace": NAMESPACE,
                        "labels": {"batch.kubernetes.io/job-name": job, "job-name": job}},
           "status": {"phase": "Succeeded", "containerStatuses": [{"name": container, "state": {"terminated": {
               "exitCode": 0, "reason": "Completed", "message": json.dumps(result)}}}]}}
    status = {"status": {"startTime": NOW, "completionTime": NOW, "succeeded": 1,
                         "conditions": [{"type": "Complete", "status": "True", "lastTransitionTime": NOW}]}}
    async with semaphore:
        async with session.post(f"{base}/api/v1/namespaces/{NAMESPACE}/pods", json=pod) as response:
            response.raise_for_status()
        async with session.patch(f"{base}/apis/batch/v1/namespaces/{NAMESPACE}/jobs/{job}/status",
                                 json=status) as response:
            response.raise_for_status()


async def roll_out(session: aiohttp.ClientSession, base: str, deployment: dict[str, Any],
                   semaphore: asyncio.Semaphore) -> None:
    """Play the Deployment controller: every replica runs the current template and is available."""
    name, replicas = deployment["metadata"]["name"], deployment["spec"].get("replicas", 1)
    status = {"status": {"observedGeneration": deployment["metadata"].get("generation", 1), "replicas": replicas,
                         "updatedReplicas": replicas, "readyReplicas": replicas, "availableReplicas": replicas}}
    path = f"{base}/apis/apps/v1/namespaces/{NAMESPACE}/deployments/{name}/status"
    async with semaphore, session.patch(path, json=status) as response:
        response.raise_for_status()


async def bench(count: int, finetunes: int, interval: float, timeout: float) -> dict[str, Any]:
    async with serve_emulator() as (emulator, url):
        workdir = Path(tempfile.mkdtemp(prefix="sdxl-operator-serving-scale-"))
        kubeconfig = workdir / "kubeconfig"
        write_kubeconfig(str(kubeconfig), url)
        port = free_port()
        env = {**os.environ, "KUBECONFIG": str(kubeconfig), "SDXL_STATUS_INTERVAL_SECONDS": str(interval),
               "SDXL_ARTIFACT_STORE": "s3://bench-artifacts/store"}
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
        semaphore = asyncio.Semaphore(32)
        try:
            await wait_for_liveness(f"http://127.0.0.1:{port}/healthz", process)
            idle_rss = sampler.peak
            async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=32)) as session:
                api = f"{url}/apis/sdxl.io/v1alpha1/namespaces/{NAMESPACE}"

                async def post(path: str, body: dict[str, Any]) -> None:
                    async with semaphore, session.post(path, json=body) as response:
                        response.raise_for_status()

                # 1. fine-tunes, succeeded
                await asyncio.gather(*(post(f"{api}/sdxlfinetunes", {
                    "apiVersion": "sdxl.io/v1alpha1", "kind": "SDXLFineTune",
                    "metadata": {"name": f"ft-{i:03d}", "namespace": NAMESPACE}, "spec": FINETUNE_SPEC})
                    for i in range(finetunes)))
                await wait_until(lambda: len(live(emulator, "batch/v1/jobs")) >= finetunes, timeout, "training Jobs")
                await asyncio.gather(*(finish_job(session, url, f"ft-{i:03d}-train", "trainer", {
                    "status": "Succeeded", "artifacts": {"lora": f"s3://bench/ft-{i:03d}/lora.safetensors"},
                    "metrics": {"loraSha256": f"{i:064x}", "steps": 500}}, semaphore) for i in range(finetunes)))
                await wait_until(lambda: sum(1 for ft in live(emulator, "sdxl.io/v1alpha1/sdxlfinetunes")
                                             if (ft.get("status") or {}).get("phase") == "Succeeded") >= finetunes,
                                 timeout, "fine-tunes Succeeded")

                # 2. deployments, compiling
                started = time.monotonic()
                await asyncio.gather(*(post(f"{api}/sdxldeployments", {
                    "apiVersion": "sdxl.io/v1alpha1", "kind": "SDXLDeployment",
                    "metadata": {"name": f"dep-{i:03d}", "namespace": NAMESPACE},
                    "spec": {"fineTune": f"ft-{i % finetunes:03d}", "accelerator": "cpu",
                             "loraScale": SCALES[(i // finetunes) % len(SCALES)]}})
                    for i in range(count)))
                deployments = "sdxl.io/v1alpha1/sdxldeployments"
                await wait_until(lambda: sum(1 for d in live(emulator, deployments)
                                             if (d.get("status") or {}).get("phase") == "Compiling") >= count,
                                 timeout, "every deployment Compiling")
                compiling_s = time.monotonic() - started
                compile_jobs = [j for j in live(emulator, "batch/v1/jobs")
                                if "sdxl.io/compile-key" in j["metadata"].get("labels", {})]

                # 3. compiles done -> Deployments
                completing = time.monotonic()
                await asyncio.gather(*(finish_job(session, url, job["metadata"]["name"], "compiler", {
                    "status": "Succeeded",
                    "artifacts": {"compiled": job["metadata"]["annotations"]["sdxl.io/compiled-artifact"]},
                    "metrics": {"key": job["metadata"]["annotations"]["sdxl.io/compile-key"], "cacheHit": False}},
                    semaphore) for job in compile_jobs))
                marked_s = time.monotonic() - completing
                await wait_until(lambda: len(live(emulator, "apps/v1/deployments")) >= count
                                 and len(live(emulator, "v1/services")) >= count, timeout, "all Deployments")
                deployments_s = time.monotonic() - completing

                # 4. rolled out -> Ready
                rolling = time.monotonic()
                await asyncio.gather(*(roll_out(session, url, d, semaphore)
                                       for d in live(emulator, "apps/v1/deployments")))
                await wait_until(lambda: sum(1 for d in live(emulator, deployments)
                                             if (d.get("status") or {}).get("phase") == "Ready"
                                             and (d.get("status") or {}).get("url")) >= count,
                                 timeout, "every deployment Ready")
                ready_s = time.monotonic() - rolling
            duplicates = len(live(emulator, "apps/v1/deployments")) - count
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
            "finetunes": finetunes,
            "status_interval_s": interval,
            "compiling_s": round(compiling_s, 2),
            "compile_jobs": len(compile_jobs),
            "expected_compile_jobs": min(count, finetunes * len(SCALES)),
            "compiles_marked_s": round(marked_s, 2),
            "deployments_s": round(deployments_s, 2),
            "ready_s": round(ready_s, 2),
            "idle_rss_mb": round(idle_rss / 2**20, 1),
            "peak_rss_mb": round(sampler.peak / 2**20, 1),
            "duplicate_deployments": duplicates,
            "operator_log": str(log_path),
        }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=200, help="SDXLDeployments created at once")
    parser.add_argument("--finetunes", type=int, default=50, help="fine-tunes they serve")
    parser.add_argument("--interval", type=float, default=10.0,
                        help="operator status interval, seconds (the production default)")
    parser.add_argument("--timeout", type=float, default=180.0, help="give up after this many seconds per stage")
    parser.add_argument("--json", type=Path, default=REPO / "bench" / "results" / "operator_scale_deployments.json")
    args = parser.parse_args(argv)

    result = asyncio.run(bench(args.count, args.finetunes, args.interval, args.timeout))
    result.update({
        "targets": {"deployments_s": TARGET_SECONDS, "peak_rss_mb": TARGET_RSS_MB},
        "met": result["deployments_s"] < TARGET_SECONDS and result["peak_rss_mb"] < TARGET_RSS_MB
        and result["compile_jobs"] == result["expected_compile_jobs"] and result["duplicate_deployments"] == 0,
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform()},
    })
    rows = [
        ("SDXLDeployments / fine-tunes", f"{result['count']} / {result['finetunes']}"),
        ("every deployment Compiling", f"{result['compiling_s']:.2f} s"),
        ("compile Jobs (one per key expected)", f"{result['compile_jobs']} (expected {result['expected_compile_jobs']})"),
        (f"all Deployments + Services after compiles done (timer {args.interval:g} s)",
         f"{result['deployments_s']:.2f} s  (target < {TARGET_SECONDS:.0f} s)"),
        ("every deployment Ready after rollouts", f"{result['ready_s']:.2f} s"),
        ("operator RSS when idle", f"{result['idle_rss_mb']:.1f} MB"),
        ("operator peak RSS", f"{result['peak_rss_mb']:.1f} MB  (target < {TARGET_RSS_MB:.0f} MB)"),
        ("duplicate Deployments", f"{result['duplicate_deployments']}"),
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
