"""The operator at scale: N SDXLFineTunes created at once, against the API emulator or a real control plane.

``--control-plane emulator`` (the default): the API server is the emulator
(``sdxl_sandbox.kube_emulator``) on 127.0.0.1 in this process; the operator is the real
``sdxl-operator run --standalone --all-namespaces`` in a subprocess (so its memory is its own), found
through a kubeconfig, and this process plays the Job controller and kubelet.

``--control-plane real``: kube-apiserver, kube-controller-manager, kube-scheduler and etcd with the
Helm chart installed (``bench/_real_cluster.py``); the operator runs as the chart's ServiceAccount
with the chart's arguments. Kubernetes' Job controller creates the pods and the scheduler binds them
to one large simulated CPU node; no trainer runs: this process writes each pod's status as the
kubelet would once the trainer exited (Succeeded, the result as termination message), and the Job
controller completes the Job. ``--control-plane both`` runs the emulator, then the real control
plane, and prints them side by side.

After the operator answers its liveness probe, N fine-tunes are POSTed concurrently, and the bench
measures:

* ``jobs_s`` — until all N training Jobs (and their spec ConfigMaps) exist;
* ``statuses_s`` — until every fine-tune has its first status written (phase, trainingJob);
* ``succeeded_s`` — then, playing the Job controller and kubelet, every Job is marked Complete
  with a termination message at once (real: every pod is marked Succeeded at once, once all are
  bound, and the Job controller completes the Jobs); until every status is Succeeded with its
  artifacts (a child's change, or the status ticks every ``--interval`` seconds);
* ``peak_rss_mb`` — the operator process's peak resident memory, sampled every 50 ms;
* the CPU time the operator and the API side (the emulator and bench; or the control plane's four
  processes, and the bench apart) used until every status was written: on a shared two-core machine
  the wall-clock numbers depend on the load, these much less.

Targets: all N Jobs and statuses within 20 s, peak RSS under 250 MB (N = 200).

    .venv/bin/python bench/operator_scale.py               # 200 fine-tunes
    .venv/bin/python bench/operator_scale.py --count 50    # quick look
    .venv/bin/python bench/operator_scale.py --control-plane both   # emulator and real, side by side

Results: a table on stdout and JSON in bench/results/operator_scale.json (or --json): one run's
figures, or with ``both`` each run's under ``emulator`` and ``real``.

The SDXLDeployment side (200 deployments over 50 fine-tunes, compiles shared per key) is
``bench/operator_scale_deployments.py``; both run on ``bench/_emulated_cluster.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import sys
import time
from collections.abc import Iterable
from typing import Any

from _emulated_cluster import (
    FINETUNES,
    EmulatedCluster,
    emulated_cluster,
    machine,
    megabytes,
    run_stopping_on_sigterm,
    scale_arguments,
    wait_until,
)
from _real_cluster import RealCluster, poll_until, real_cluster
from sdxl_operator.core.labels import FINETUNE_KEY

NAMESPACE = "bench"
TARGET_SECONDS = 20.0
TARGET_RSS_MB = 250.0


def finetune_name(index: int) -> str:
    return f"ft-{index:03d}"


def first_statuses(cluster: EmulatedCluster) -> int:
    return sum(1 for obj in cluster.live(FINETUNES) if (obj.get("status") or {}).get("trainingJob"))


def training_result(finetune: str) -> dict[str, Any]:
    """What the trainer of ``finetune`` reports in its termination message: a LoRA and its metrics."""
    return {"status": "Succeeded", "artifacts": {"lora": f"s3://bench/{finetune}-train/lora.safetensors"},
            "metrics": {"steps": 500, "finalLoss": 0.1, "loraSha256": "ab" * 32}}


async def complete_all(cluster: EmulatedCluster, count: int) -> None:
    """Every training Job finishes at once with a LoRA and its metrics."""
    await asyncio.gather(*(cluster.finish_job(f"{finetune_name(index)}-train", "trainer",
                                              training_result(finetune_name(index))) for index in range(count)))


async def bench_emulator(count: int, interval: float, timeout: float) -> dict[str, Any]:
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
        "control_plane": "emulator",
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


def first_statuses_of(finetunes: list[dict[str, Any]]) -> int:
    return sum(1 for obj in finetunes if (obj.get("status") or {}).get("trainingJob"))


def succeeded(finetunes: list[dict[str, Any]]) -> int:
    return sum(1 for obj in finetunes
               if (status := obj.get("status") or {}).get("phase") == "Succeeded" and status.get("artifacts"))


def job_complete(job: dict[str, Any]) -> bool:
    return any(c.get("type") == "Complete" and c.get("status") == "True"
               for c in (job.get("status") or {}).get("conditions") or [])


async def complete_pods(cluster: RealCluster) -> int:
    """Every bound training pod's trainer exits 0 at once with its result; how many pods that was."""
    pods = [pod for pod in await cluster.pods()
            if pod["spec"].get("nodeName") and (pod.get("status") or {}).get("phase") == "Pending"]
    await asyncio.gather(*(cluster.finish_pod(pod, training_result(pod["metadata"]["labels"][FINETUNE_KEY]))
                           for pod in pods))
    return len(pods)


def spread(timestamps: Iterable[str | None]) -> float | None:
    """Seconds from the first to the last of some RFC 3339 timestamps (None when there are none)."""
    moments = [datetime.datetime.fromisoformat(t.replace("Z", "+00:00")) for t in timestamps if t]
    return (max(moments) - min(moments)).total_seconds() if moments else None


async def bench_real(count: int, interval: float, timeout: float) -> dict[str, Any]:
    async with real_cluster(NAMESPACE, interval) as cluster:
        started = time.monotonic()
        cpu_before = cluster.sampler.cpu_seconds
        plane_cpu_before = cluster.control_plane_cpu()
        bench_cpu_before = time.process_time()
        await cluster.create_finetunes([finetune_name(index) for index in range(count)])
        created_s = time.monotonic() - started

        async def jobs_exist() -> bool:
            return len(await cluster.jobs()) >= count and len(await cluster.configmaps()) >= count

        await poll_until(jobs_exist, timeout, "the Jobs")
        jobs_s = time.monotonic() - started

        async def statuses_written() -> bool:
            return first_statuses_of(await cluster.finetunes()) >= count

        await poll_until(statuses_written, timeout, "the first statuses")
        statuses_s = time.monotonic() - started
        operator_cpu_s = cluster.sampler.cpu_seconds - cpu_before
        plane_cpu_s = cluster.control_plane_cpu() - plane_cpu_before
        bench_cpu_s = time.process_time() - bench_cpu_before

        async def pods_bound() -> bool:
            pods = await cluster.pods()
            return sum(1 for pod in pods if pod["spec"].get("nodeName")) >= count

        await poll_until(pods_bound, timeout, "the scheduler to bind every pod")
        bound_s = time.monotonic() - started

        completing = time.monotonic()
        operator_cpu_before, plane_cpu_before = cluster.sampler.cpu_seconds, cluster.control_plane_cpu()
        finished_pods = await complete_pods(cluster)
        jobs_complete_s: float | None = None

        async def jobs_completed() -> bool:
            nonlocal jobs_complete_s
            if jobs_complete_s is None and sum(map(job_complete, await cluster.jobs())) >= count:
                jobs_complete_s = time.monotonic() - completing
            return jobs_complete_s is not None

        async def all_succeeded() -> bool:
            await jobs_completed()
            return succeeded(await cluster.finetunes()) >= count

        await poll_until(all_succeeded, timeout, "every status Succeeded")
        succeeded_s = time.monotonic() - completing
        operator_cpu_completing = cluster.sampler.cpu_seconds - operator_cpu_before
        plane_cpu_completing = cluster.control_plane_cpu() - plane_cpu_before
        # The statuses can be Succeeded before the Job controller completes every Job: they read the pods.
        await poll_until(jobs_completed, timeout, "every Job Complete")
        jobs, pods = await cluster.jobs(), await cluster.pods()
        duplicates = len(jobs) - count
        warnings = await cluster.warning_events()
    return {
        "control_plane": "real",
        "count": count,
        "status_interval_s": interval,
        "create_requests_s": round(created_s, 2),
        "jobs_s": round(jobs_s, 2),
        "statuses_s": round(statuses_s, 2),
        "pods_bound_s": round(bound_s, 2),
        "jobs_complete_s": round(jobs_complete_s, 2) if jobs_complete_s is not None else None,
        "succeeded_s": round(succeeded_s, 2),
        "operator_cpu_s_until_statuses": round(operator_cpu_s, 2),
        "control_plane_cpu_s_until_statuses": round(plane_cpu_s, 2),
        "bench_cpu_s_until_statuses": round(bench_cpu_s, 2),
        "idle_rss_mb": megabytes(cluster.idle_rss),
        "peak_rss_mb": megabytes(cluster.sampler.peak),
        "operator_cpu_s_completing": round(operator_cpu_completing, 2),
        "control_plane_cpu_s_completing": round(plane_cpu_completing, 2),
        # From the objects' own timestamps (whole seconds): how the controllers' work spread out.
        "jobs_created_over_s": spread(job["metadata"].get("creationTimestamp") for job in jobs),
        "pods_created_over_s": spread(pod["metadata"].get("creationTimestamp") for pod in pods),
        "jobs_completed_over_s": spread((job.get("status") or {}).get("completionTime") for job in jobs),
        "pods_completed": finished_pods,
        "duplicate_jobs": duplicates,
        "warning_events": warnings,
        "operator_log": str(cluster.log_path),
        "operator_log_lines": len(cluster.log_path.read_text(encoding="utf-8", errors="replace").splitlines()),
        "control_plane_logs": str(cluster.log_path.parent / "control-plane" / "logs"),
    }


def seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f} s"


def spread_pair(result: dict[str, Any], first: str, second: str) -> str:
    if first not in result:
        return "-"
    return f"{seconds(result[first])} / {seconds(result[second])}"


def rows(result: dict[str, Any], interval: float) -> list[tuple[str, str]]:
    """The table's rows for one run; a measure the run has not shows as '-'."""
    api_cpu = result.get("emulator_cpu_s_until_statuses", result.get("control_plane_cpu_s_until_statuses"))
    return [
        ("fine-tunes created at once", f"{result['count']}"),
        ("all create requests answered", seconds(result["create_requests_s"])),
        ("all Jobs + ConfigMaps exist (jobs_s)", seconds(result["jobs_s"])),
        (f"every status written (statuses_s; target < {TARGET_SECONDS:.0f} s)", seconds(result["statuses_s"])),
        ("every training pod bound by the scheduler", seconds(result.get("pods_bound_s"))),
        ("every Job Complete after its pod succeeded", seconds(result.get("jobs_complete_s"))),
        (f"all Succeeded after completion (succeeded_s; status interval {interval:g} s)", seconds(result["succeeded_s"])),
        ("operator CPU time until statuses", seconds(result["operator_cpu_s_until_statuses"])),
        ("API side CPU time until then (emulator+bench | control plane)", seconds(api_cpu)),
        ("bench CPU time until then (real only)", seconds(result.get("bench_cpu_s_until_statuses"))),
        ("operator RSS when idle", f"{result['idle_rss_mb']:.1f} MB"),
        (f"operator peak RSS (target < {TARGET_RSS_MB:.0f} MB)", f"{result['peak_rss_mb']:.1f} MB"),
        ("duplicate Jobs", f"{result['duplicate_jobs']}"),
        ("real: Jobs created over / their pods over", spread_pair(result, "jobs_created_over_s", "pods_created_over_s")),
        ("real: Jobs completed over", seconds(result.get("jobs_completed_over_s"))),
        ("real: operator / control plane CPU while completing",
         spread_pair(result, "operator_cpu_s_completing", "control_plane_cpu_s_completing")),
    ]


def met(result: dict[str, Any]) -> bool:
    return bool(result["statuses_s"] < TARGET_SECONDS and result["peak_rss_mb"] < TARGET_RSS_MB)


def print_table(results: dict[str, dict[str, Any]], interval: float) -> None:
    """One column per control plane."""
    columns = {plane: rows(result, interval) for plane, result in results.items()}
    names = [name for name, _ in next(iter(columns.values()))]
    width = max(len(name) for name in names)
    widths = {plane: max(len(plane), *(len(value) for _, value in column)) for plane, column in columns.items()}
    print(f"{'measure':<{width}}  " + "  ".join(f"{plane:>{widths[plane]}}" for plane in columns))
    for index, name in enumerate(names):
        print(f"{name:<{width}}  " + "  ".join(f"{columns[plane][index][1]:>{widths[plane]}}" for plane in columns))
    for plane, result in results.items():
        for reason, seen in (result.get("warning_events") or {}).items():
            print(f"{plane}: {seen['count']} Warning events {reason} on {', '.join(map(str, seen['kinds']))}, "
                  f"e.g. {seen['example']}")
        if "operator_log_lines" in result:
            print(f"{plane}: the operator (--quiet) logged {result['operator_log_lines']} lines: {result['operator_log']}")
    print("targets met: " + ", ".join(f"{plane} {'yes' if met(result) else 'NO'}" for plane, result in results.items()))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=200, help="fine-tunes created at once")
    parser.add_argument("--control-plane", choices=("emulator", "real", "both"), default="emulator",
                        help="the API emulator (default), the real control plane, or both side by side")
    scale_arguments(parser, timeout=120.0, json_name="operator_scale.json")
    args = parser.parse_args(argv)

    planes = ("emulator", "real") if args.control_plane == "both" else (args.control_plane,)
    runners = {"emulator": bench_emulator, "real": bench_real}
    results = {plane: run_stopping_on_sigterm(runners[plane](args.count, args.interval, args.timeout))
               for plane in planes}
    common = {"targets": {"jobs_and_statuses_s": TARGET_SECONDS, "peak_rss_mb": TARGET_RSS_MB},
              "machine": machine()}
    if len(results) == 1:
        result = next(iter(results.values()))
        output: dict[str, Any] = {**result, **common, "met": met(result)}
    else:
        output = {**results, **common, "met": {plane: met(result) for plane, result in results.items()}}
    print_table(results, args.interval)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(output, indent=2) + "\n")
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
