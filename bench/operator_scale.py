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
``bench/operator_scale_deployments.py``; both run on ``bench/_emulated_cluster.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from typing import Any

from _emulated_cluster import (
    FINETUNES,
    EmulatedCluster,
    emulated_cluster,
    machine,
    megabytes,
    report,
    scale_arguments,
    wait_until,
)

NAMESPACE = "bench"
TARGET_SECONDS = 20.0
TARGET_RSS_MB = 250.0


def finetune_name(index: int) -> str:
    return f"ft-{index:03d}"


def first_statuses(cluster: EmulatedCluster) -> int:
    return sum(1 for obj in cluster.live(FINETUNES) if (obj.get("status") or {}).get("trainingJob"))


async def complete_all(cluster: EmulatedCluster, count: int) -> None:
    """Every training Job finishes at once with a LoRA and its metrics."""
    await asyncio.gather(*(cluster.finish_job(f"{finetune_name(index)}-train", "trainer", {
        "status": "Succeeded", "artifacts": {"lora": f"s3://bench/{finetune_name(index)}-train/lora.safetensors"},
        "metrics": {"steps": 500, "finalLoss": 0.1, "loraSha256": "ab" * 32}}) for index in range(count)))


async def bench(count: int, interval: float, timeout: float) -> dict[str, Any]:
    async with emulated_cluster(NAMESPACE, interval) as cluster:
        started = time.monotonic()
        cpu_before = cluster.sampler.cpu_seconds
        bench_cpu_before = time.process_time()
        await cluster.create_finetunes([finetune_name(index) for index in range(count)])
        created_s = time.monotonic() - started
        await wait_until(lambda: len(cluster.live("batch/v1/jobs")) >= count
                         and len(cluster.live("v1/configmaps")) >= count, timeout, "the Jobs")
        jobs_s = time.monotonic() - started
        await wait_until(lambda: first_statuses(cluster) >= count, timeout, "the first statuses")
        statuses_s = time.monotonic() - started
        operator_cpu_s = cluster.sampler.cpu_seconds - cpu_before
        emulator_cpu_s = time.process_time() - bench_cpu_before

        completing = time.monotonic()
        await complete_all(cluster, count)
        await wait_until(lambda: cluster.count_phase(FINETUNES, "Succeeded", also="artifacts") >= count,
                         timeout, "every status Succeeded")
        succeeded_s = time.monotonic() - completing
        duplicates = len(cluster.live("batch/v1/jobs")) - count
    return {
        "count": count,
        "status_interval_s": interval,
        "create_requests_s": round(created_s, 2),
        "jobs_s": round(jobs_s, 2),
        "statuses_s": round(statuses_s, 2),
        "succeeded_s": round(succeeded_s, 2),
        "operator_cpu_s_until_statuses": round(operator_cpu_s, 2),
        "emulator_cpu_s_until_statuses": round(emulator_cpu_s, 2),
        "idle_rss_mb": megabytes(cluster.idle_rss),
        "peak_rss_mb": megabytes(cluster.sampler.peak),
        "duplicate_jobs": duplicates,
        "operator_log": str(cluster.log_path),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=200, help="fine-tunes created at once")
    scale_arguments(parser, timeout=120.0, json_name="operator_scale.json")
    args = parser.parse_args(argv)

    result = asyncio.run(bench(args.count, args.interval, args.timeout))
    result.update({
        "targets": {"jobs_and_statuses_s": TARGET_SECONDS, "peak_rss_mb": TARGET_RSS_MB},
        "met": result["statuses_s"] < TARGET_SECONDS and result["peak_rss_mb"] < TARGET_RSS_MB,
        "machine": machine(),
    })
    report(result, [
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
    ], args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
