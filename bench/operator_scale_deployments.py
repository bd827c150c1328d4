"""The SDXLDeployment controller at scale: 200 SDXLDeployments over 50 fine-tunes, against the API emulator.

Same setup as ``operator_scale.py`` (both run on ``_emulated_cluster.py``): the emulator in this process, the real
``sdxl-operator run --standalone --all-namespaces`` in a subprocess found through a kubeconfig, and
this script playing the Job and Deployment controllers. Steps:

1. ``--finetunes`` fine-tunes (tiny model) are created and their training Jobs marked Complete with
   a LoRA and its sha256; wait until all are Succeeded.
2. ``--count`` SDXLDeployments are created at once, spread evenly over the fine-tunes and over two
   LoRA scales, so each compile key is shared by ``count / (2 x finetunes)`` deployments: the
   operator must start exactly one compile Job per key (``compile_jobs`` vs ``expected_compile_jobs``).
   ``compiling_s``: until every deployment reports phase Compiling.
3. Every compile Job is marked Complete at once (a finished pod with the compile result).
   ``deployments_s``: from then until all Deployments and Services exist (through a child's change or the status ticks,
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
import sys
import time
from typing import Any

from _emulated_cluster import (
    DEPLOYMENTS,
    FINETUNES,
    EmulatedCluster,
    emulated_cluster,
    machine,
    megabytes,
    report,
    run_stopping_on_sigterm,
    scale_arguments,
    wait_until,
)

NAMESPACE = "bench-serving"
SCALES = (1.0, 0.8)
TARGET_SECONDS = 30.0
TARGET_RSS_MB = 300.0


async def succeeded_finetunes(cluster: EmulatedCluster, finetunes: int, timeout: float) -> None:
    """Step 1: fine-tunes whose training Jobs finished with a LoRA and its sha256."""
    await cluster.create_finetunes([f"ft-{i:03d}" for i in range(finetunes)])
    await wait_until(lambda: len(cluster.live("batch/v1/jobs")) >= finetunes, timeout, "training Jobs")
    await asyncio.gather(*(cluster.finish_job(f"ft-{i:03d}-train", "trainer", {
        "status": "Succeeded", "artifacts": {"lora": f"s3://bench/ft-{i:03d}/lora.safetensors"},
        "metrics": {"loraSha256": f"{i:064x}", "steps": 500}}) for i in range(finetunes)))
    await wait_until(lambda: cluster.count_phase(FINETUNES, "Succeeded") >= finetunes,
                     timeout, "fine-tunes Succeeded")


async def bench(count: int, finetunes: int, interval: float, timeout: float) -> dict[str, Any]:
    async with emulated_cluster(NAMESPACE, interval, {"SDXL_ARTIFACT_STORE": "s3://bench-artifacts/store"}) as cluster:
        await succeeded_finetunes(cluster, finetunes, timeout)

        # 2. deployments, compiling
        started = time.monotonic()
        await asyncio.gather(*(cluster.post(f"/apis/sdxl.io/v1alpha1/namespaces/{NAMESPACE}/sdxldeployments", {
            "apiVersion": "sdxl.io/v1alpha1", "kind": "SDXLDeployment",
            "metadata": {"name": f"dep-{i:03d}", "namespace": NAMESPACE},
            "spec": {"fineTune": f"ft-{i % finetunes:03d}", "accelerator": "cpu",
                     "loraScale": SCALES[(i // finetunes) % len(SCALES)]}})
            for i in range(count)))
        await wait_until(lambda: cluster.count_phase(DEPLOYMENTS, "Compiling") >= count,
                         timeout, "every deployment Compiling")
        compiling_s = time.monotonic() - started
        compile_jobs = [j for j in cluster.live("batch/v1/jobs")
                        if "sdxl.io/compile-key" in j["metadata"].get("labels", {})]

        # 3. compiles done -> Deployments
        completing = time.monotonic()
        await asyncio.gather(*(cluster.finish_job(job["metadata"]["name"], "compiler", {
            "status": "Succeeded",
            "artifacts": {"compiled": job["metadata"]["annotations"]["sdxl.io/compiled-artifact"]},
            "metrics": {"key": job["metadata"]["annotations"]["sdxl.io/compile-key"], "cacheHit": False}})
            for job in compile_jobs))
        marked_s = time.monotonic() - completing
        await wait_until(lambda: len(cluster.live("apps/v1/deployments")) >= count
                         and len(cluster.live("v1/services")) >= count, timeout, "all Deployments")
        deployments_s = time.monotonic() - completing

        # 4. rolled out -> Ready
        rolling = time.monotonic()
        await asyncio.gather(*(cluster.roll_out(d) for d in cluster.live("apps/v1/deployments")))
        await wait_until(lambda: cluster.count_phase(DEPLOYMENTS, "Ready", also="url") >= count,
                         timeout, "every deployment Ready")
        ready_s = time.monotonic() - rolling
        duplicates = len(cluster.live("apps/v1/deployments")) - count
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
        "idle_rss_mb": megabytes(cluster.idle_rss),
        "peak_rss_mb": megabytes(cluster.sampler.peak),
        "duplicate_deployments": duplicates,
        "operator_log": str(cluster.log_path),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=200, help="SDXLDeployments created at once")
    parser.add_argument("--finetunes", type=int, default=50, help="fine-tunes they serve")
    scale_arguments(parser, timeout=180.0, json_name="operator_scale_deployments.json")
    args = parser.parse_args(argv)

    result = run_stopping_on_sigterm(bench(args.count, args.finetunes, args.interval, args.timeout))
    result.update({
        "targets": {"deployments_s": TARGET_SECONDS, "peak_rss_mb": TARGET_RSS_MB},
        "met": result["deployments_s"] < TARGET_SECONDS and result["peak_rss_mb"] < TARGET_RSS_MB
        and result["compile_jobs"] == result["expected_compile_jobs"] and result["duplicate_deployments"] == 0,
        "machine": machine(),
    })
    report(result, [
        ("SDXLDeployments / fine-tunes", f"{result['count']} / {result['finetunes']}"),
        ("every deployment Compiling", f"{result['compiling_s']:.2f} s"),
        ("compile Jobs (one per key expected)", f"{result['compile_jobs']} (expected {result['expected_compile_jobs']})"),
        (f"all Deployments + Services after compiles done (status interval {args.interval:g} s)",
         f"{result['deployments_s']:.2f} s  (target < {TARGET_SECONDS:.0f} s)"),
        ("every deployment Ready after rollouts", f"{result['ready_s']:.2f} s"),
        ("operator RSS when idle", f"{result['idle_rss_mb']:.1f} MB"),
        ("operator peak RSS", f"{result['peak_rss_mb']:.1f} MB  (target < {TARGET_RSS_MB:.0f} MB)"),
        ("duplicate Deployments", f"{result['duplicate_deployments']}"),
    ], args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
