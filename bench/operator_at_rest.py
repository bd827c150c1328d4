"""The operator at rest: what it costs to watch 1,000 Ready SDXLDeployments and 200 finished
SDXLFineTunes while nothing changes, and how fast a status follows a change of a child.

Setup (``--control-plane real``, the default, or ``emulator``): ``--finetunes`` fine-tunes (tiny
model) whose training finished, and ``--count`` SDXLDeployments (accelerator cpu) spread over them,
each compiled (one compile per fine-tune) and served by a Deployment whose replica is ready. No
workload runs: the bench plays the kubelet (and, on the emulator, the Job and Deployment
controllers). On the real control plane Kubernetes' own controllers create the pods, ReplicaSets and
Deployment statuses; the bench writes the pods' status (training and compile pods Succeeded with the
workload's result as termination message, server pods Running and Ready).

Once every fine-tune is Succeeded and every deployment Ready, the operator has worked off its
backlog (less than 0.2 s of CPU in 10 s) and ``--settle`` seconds more have passed, the bench measures over ``--window`` seconds with nothing changing:

* **requests/s** made by the operator. Emulator: the requests it served whose User-Agent is not the
  bench's (every watch, list, get, patch; discovery excluded). Real control plane: a FlowSchema that
  matches only the operator's ServiceAccount (precedence before the built-in ones, so no other client
  lands in it) and the API server's ``apiserver_flowcontrol_dispatched_requests_total`` for it, read
  from ``/metrics`` before and after the window;
* **log lines/min** the operator wrote, at the default log level (no ``--quiet``);
* the operator's **RSS** at rest, and its **peak** over the whole run (sampled every 50 ms).

Then changes, one at a time, each timed from the bench's write to the status reflecting it:

* ``--flips`` times, one server replica stops being ready, then is ready again (two samples per
  flip). Emulator: the bench writes the Deployment's ``readyReplicas``; real: the pod's Ready
  condition, and the ReplicaSet and Deployment controllers carry it to the Deployment's status (their
  delay is part of the figure, and reported apart);
* ``--finetune-changes`` new fine-tunes, each once its Job exists: its training pod finishes
  (emulator: the Job is marked Complete with it), timed until the status is Succeeded.

Goals: <= 1 request/s at rest, p95 change -> status <= 2 s, RSS <= 200 MB, 0 log lines/min at rest.

    .venv/bin/python bench/operator_at_rest.py                                  # real, 1000 + 200
    .venv/bin/python bench/operator_at_rest.py --control-plane emulator
    .venv/bin/python bench/operator_at_rest.py --count 100 --finetunes 20 --window 30   # quick look
    .venv/bin/python bench/operator_at_rest.py --control-plane emulator --operator-env MALLOC_ARENA_MAX=2

Results: a table on stdout and JSON in bench/results/operator_at_rest_<control plane>.json (or --json).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import psutil

from _emulated_cluster import (
    BENCH_AGENT,
    DEPLOYMENTS,
    FINETUNES,
    RESULTS,
    EmulatedCluster,
    emulated_cluster,
    machine,
    megabytes,
    run_stopping_on_sigterm,
)
from _real_cluster import MANAGED, RealCluster, now_rfc3339, poll_until, real_cluster

NAMESPACE = "bench-rest"
TARGET_REQUESTS_PER_S = 1.0
TARGET_P95_S = 2.0
TARGET_RSS_MB = 200.0
TARGET_LOG_LINES_PER_MIN = 0.0
FLOW_SCHEMA = "sdxl-operator-bench"
# Sampling a single object while a change travels: fine enough for a 2 s goal.
SAMPLE_POLL_S = 0.05
# "Settled" also means the operator finished its own backlog (handlers queued behind the statuses,
# finalizers removed): less than this much CPU time over QUIET_S seconds.
QUIET_CPU_S, QUIET_S = 0.2, 10.0


def finetune_name(index: int) -> str:
    return f"ft-{index:04d}"


def deployment_name(index: int) -> str:
    return f"dep-{index:04d}"


def training_result(finetune: str) -> dict[str, Any]:
    return {"status": "Succeeded", "artifacts": {"lora": f"s3://bench/{finetune}/lora.safetensors"},
            "metrics": {"steps": 500, "finalLoss": 0.1, "loraSha256": f"{abs(hash(finetune)):064x}"[-64:]}}


def compile_result(job: dict[str, Any]) -> dict[str, Any]:
    annotations = job["metadata"].get("annotations") or {}
    return {"status": "Succeeded", "artifacts": {"compiled": annotations["sdxl.io/compiled-artifact"]},
            "metrics": {"key": annotations["sdxl.io/compile-key"], "cacheHit": False}}


def deployment_manifest(index: int, finetunes: int) -> dict[str, Any]:
    return {"apiVersion": "sdxl.io/v1alpha1", "kind": "SDXLDeployment",
            "metadata": {"name": deployment_name(index), "namespace": NAMESPACE},
            "spec": {"fineTune": finetune_name(index % finetunes), "accelerator": "cpu"}}


def is_compile_job(job: dict[str, Any]) -> bool:
    return "sdxl.io/compile-key" in (job["metadata"].get("labels") or {})


def ready(status: dict[str, Any] | None) -> bool:
    status = status or {}
    return status.get("phase") == "Ready" and bool(status.get("url")) and int(status.get("readyReplicas") or 0) >= 1


def count_lines(path: Path) -> int:
    return len(path.read_text(encoding="utf-8", errors="replace").splitlines())


def rss(pid: int) -> int:
    process = psutil.Process(pid)
    return int(process.memory_info().rss)


async def timed(change: Callable[[], Awaitable[None]], reflected: Callable[[], Awaitable[bool]],
                timeout: float) -> float:
    """Seconds from ``change()`` being written to ``reflected()`` holding."""
    await change()
    started = time.monotonic()
    while not await reflected():
        if time.monotonic() - started > timeout:
            raise TimeoutError(f"the status did not follow a change within {timeout:.0f} s")
        await asyncio.sleep(SAMPLE_POLL_S)
    return time.monotonic() - started


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(fraction * len(ordered) + 0.5) - 1))]


def summary(samples: dict[str, list[float]]) -> dict[str, Any]:
    every = [value for values in samples.values() for value in values]
    return {"samples": {kind: [round(value, 3) for value in values] for kind, values in samples.items()},
            "count": len(every),
            "p50_s": round(statistics.median(every), 3) if every else None,
            "p95_s": round(percentile(every, 0.95), 3) if every else None,
            "max_s": round(max(every), 3) if every else None}


# ---------------------------------------------------------------- the emulator


def operator_requests(cluster: EmulatedCluster) -> int:
    return sum(count for (agent, *_), count in cluster.emulator.audit.items() if agent != BENCH_AGENT)


def operator_requests_by_kind(cluster: EmulatedCluster, before: dict[Any, int]) -> dict[str, int]:
    kinds: dict[str, int] = {}
    for (agent, verb, group, resource), count in cluster.emulator.audit.items():
        if agent != BENCH_AGENT and count - before.get((agent, verb, group, resource), 0):
            name = f"{verb} {resource}{'.' + group if group else ''}"
            kinds[name] = kinds.get(name, 0) + count - before.get((agent, verb, group, resource), 0)
    return dict(sorted(kinds.items(), key=lambda item: -item[1]))


async def set_ready_replicas(cluster: EmulatedCluster, name: str, ready_replicas: int) -> None:
    path = f"{cluster.url}/apis/apps/v1/namespaces/{NAMESPACE}/deployments/{name}/status"
    status = {"status": {"readyReplicas": ready_replicas, "availableReplicas": ready_replicas}}
    async with cluster.session.patch(path, json=status) as response:
        response.raise_for_status()


def live_status(cluster: EmulatedCluster, resource: str, name: str) -> dict[str, Any]:
    for obj in cluster.live(resource):
        if obj["metadata"]["name"] == name:
            return dict(obj.get("status") or {})
    return {}


async def bench_emulator(args: argparse.Namespace) -> dict[str, Any]:
    timeout = args.timeout
    async with emulated_cluster(NAMESPACE, args.interval,
                                {"SDXL_ARTIFACT_STORE": "s3://bench-artifacts/store", **args.operator_env},
                                quiet=False) as cluster:
        started = time.monotonic()
        await cluster.create_finetunes([finetune_name(i) for i in range(args.finetunes)])
        await wait(lambda: len(cluster.live("batch/v1/jobs")) >= args.finetunes, timeout, "training Jobs")
        await asyncio.gather(*(cluster.finish_job(f"{finetune_name(i)}-train", "trainer",
                                                  training_result(finetune_name(i))) for i in range(args.finetunes)))
        await wait(lambda: cluster.count_phase(FINETUNES, "Succeeded") >= args.finetunes, timeout,
                   "every fine-tune Succeeded")
        await asyncio.gather(*(cluster.post(f"/apis/sdxl.io/v1alpha1/namespaces/{NAMESPACE}/sdxldeployments",
                                            deployment_manifest(i, args.finetunes)) for i in range(args.count)))
        compiles = min(args.count, args.finetunes)

        def compile_jobs() -> list[dict[str, Any]]:
            return [job for job in cluster.live("batch/v1/jobs") if is_compile_job(job)]

        await wait(lambda: len(compile_jobs()) >= compiles, timeout, "the compile Jobs")
        await asyncio.gather(*(cluster.finish_job(job["metadata"]["name"], "compiler", compile_result(job))
                               for job in compile_jobs()))
        await wait(lambda: len(cluster.live("apps/v1/deployments")) >= args.count, timeout, "every Deployment")
        await asyncio.gather(*(cluster.roll_out(d) for d in cluster.live("apps/v1/deployments")))
        await wait(lambda: sum(ready(obj.get("status")) for obj in cluster.live(DEPLOYMENTS)) >= args.count,
                   timeout, "every deployment Ready")
        setup_s = time.monotonic() - started
        quiet_s = await until_quiet(lambda: cluster.sampler.cpu_seconds, timeout)
        await asyncio.sleep(args.settle)

        pid = cluster.sampler.process.pid
        requests_before, audit_before = operator_requests(cluster), dict(cluster.emulator.audit)
        lines_before, cpu_before = count_lines(cluster.log_path), cluster.sampler.cpu_seconds
        await asyncio.sleep(args.window)
        rest = {"requests": operator_requests(cluster) - requests_before,
                "requests_by_kind": operator_requests_by_kind(cluster, audit_before),
                "log_lines": count_lines(cluster.log_path) - lines_before,
                "cpu_s": cluster.sampler.cpu_seconds - cpu_before,
                "rss": rss(pid)}

        samples: dict[str, list[float]] = {"deployment_not_ready": [], "deployment_ready_again": [],
                                           "finetune_job_done": []}
        for flip in range(args.flips):
            name = deployment_name(flip * max(1, args.count // max(1, args.flips)) % args.count)
            samples["deployment_not_ready"].append(await timed(
                lambda name=name: set_ready_replicas(cluster, name, 0),  # type: ignore[misc]
                lambda name=name: as_async(int(live_status(cluster, DEPLOYMENTS, name).get("readyReplicas") or 0)
                                           == 0),
                timeout))
            samples["deployment_ready_again"].append(await timed(
                lambda name=name: set_ready_replicas(cluster, name, 1),  # type: ignore[misc]
                lambda name=name: as_async(ready(live_status(cluster, DEPLOYMENTS, name))), timeout))
        for index in range(args.finetune_changes):
            name = f"change-{index:02d}"
            await cluster.create_finetunes([name])
            await wait(lambda name=name: bool(live_status(cluster, FINETUNES, name).get("trainingJob")),  # type: ignore[misc]
                       timeout, f"{name}'s Job")
            samples["finetune_job_done"].append(await timed(
                lambda name=name: cluster.finish_job(f"{name}-train", "trainer", training_result(name)),  # type: ignore[misc]
                lambda name=name: as_async(live_status(cluster, FINETUNES, name).get("phase") == "Succeeded"),
                timeout))
        peak = cluster.sampler.peak
        log_path = cluster.log_path
    result = result_of("emulator", args, setup_s, rest, samples, peak, log_path)
    result["operator_quiet_after_s"] = round(quiet_s, 1)
    return result


async def until_quiet(cpu_seconds: Callable[[], float], timeout: float) -> float:
    """Seconds until the operator used less than QUIET_CPU_S of CPU over QUIET_S seconds."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        before = cpu_seconds()
        await asyncio.sleep(QUIET_S)
        if cpu_seconds() - before < QUIET_CPU_S:
            break
    return time.monotonic() - started


async def as_async(value: bool) -> bool:
    return value


async def wait(check: Callable[[], bool], timeout: float, what: str) -> None:
    start = time.monotonic()
    while not check():
        if time.monotonic() - start > timeout:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        await asyncio.sleep(0.2)


# ---------------------------------------------------------------- the real control plane


def flow_schema(namespace: str, service_account: str) -> dict[str, Any]:
    """Every request of the operator's ServiceAccount, and nobody else's, in a flow of its own."""
    return {
        "apiVersion": "flowcontrol.apiserver.k8s.io/v1", "kind": "FlowSchema",
        "metadata": {"name": FLOW_SCHEMA},
        "spec": {
            # Before the built-in "service-accounts" (9000) and "workload-leader-election" schemas.
            "matchingPrecedence": 500,
            "priorityLevelConfiguration": {"name": "workload-high"},
            "distinguisherMethod": {"type": "ByUser"},
            "rules": [{
                "subjects": [{"kind": "ServiceAccount",
                              "serviceAccount": {"namespace": namespace, "name": service_account}}],
                "resourceRules": [{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"], "clusterScope": True,
                                   "namespaces": ["*"]}],
                "nonResourceRules": [{"verbs": ["*"], "nonResourceURLs": ["*"]}],
            }],
        },
    }


async def dispatched(cluster: RealCluster) -> int:
    """The requests the API server dispatched for the operator's FlowSchema so far."""
    async with cluster.semaphore, cluster.session.get(f"{cluster.url}/metrics") as response:
        text = await response.text()
    total = 0.0
    for line in text.splitlines():
        if line.startswith("apiserver_flowcontrol_dispatched_requests_total{") and \
                f'flow_schema="{FLOW_SCHEMA}"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return int(total)


def pod_ready_status(pod: dict[str, Any], is_ready: bool) -> dict[str, Any]:
    """The kubelet's status of a server pod whose one container runs (and is ready or not)."""
    now = now_rfc3339()
    container = pod["spec"]["containers"][0]
    flag = "True" if is_ready else "False"
    conditions = [{"type": kind, "status": status, "lastTransitionTime": now} for kind, status in (
        ("PodScheduled", "True"), ("Initialized", "True"), ("ContainersReady", flag), ("Ready", flag))]
    return {"status": {"phase": "Running", "startTime": now, "conditions": conditions, "podIP": "10.1.0.1",
                       "containerStatuses": [{
                           "name": container["name"], "image": container.get("image", ""), "imageID": "",
                           "ready": is_ready, "started": True, "restartCount": 0,
                           "state": {"running": {"startedAt": now}}}]}}


async def set_pod_ready(cluster: RealCluster, pod: dict[str, Any], is_ready: bool) -> None:
    await cluster.request("PATCH", f"/api/v1/namespaces/{NAMESPACE}/pods/{pod['metadata']['name']}/status",
                          pod_ready_status(pod, is_ready), content_type="application/merge-patch+json")


async def custom(cluster: RealCluster, plural: str) -> list[dict[str, Any]]:
    return await cluster.list_objects(f"/apis/sdxl.io/v1alpha1/namespaces/{NAMESPACE}/{plural}")


async def custom_status(cluster: RealCluster, plural: str, name: str) -> dict[str, Any]:
    found = await cluster.request("GET", f"/apis/sdxl.io/v1alpha1/namespaces/{NAMESPACE}/{plural}/{name}")
    return dict((found or {}).get("status") or {})


async def finish_bound_pods(cluster: RealCluster, done: set[str], result_of: Callable[[dict[str, Any]],
                            dict[str, Any] | None]) -> None:
    """Every bound, still Pending pod that ``result_of`` has a result for finishes with it, once."""
    pods = [pod for pod in await cluster.pods()
            if pod["spec"].get("nodeName") and (pod.get("status") or {}).get("phase") == "Pending"
            and pod["metadata"]["name"] not in done]
    finishing = []
    for pod in pods:
        result = result_of(pod)
        if result is not None:
            done.add(pod["metadata"]["name"])
            finishing.append(cluster.finish_pod(pod, result))
    await asyncio.gather(*finishing)


async def bench_real(args: argparse.Namespace) -> dict[str, Any]:
    timeout = args.timeout
    async with real_cluster(NAMESPACE, args.interval, quiet=False) as cluster:
        chart = cluster.sandbox.chart
        assert chart is not None
        await cluster.request("POST", "/apis/flowcontrol.apiserver.k8s.io/v1/flowschemas",
                              flow_schema(chart.namespace, chart.service_account))
        started = time.monotonic()
        finished: set[str] = set()
        await cluster.create_finetunes([finetune_name(i) for i in range(args.finetunes)])

        def training(pod: dict[str, Any]) -> dict[str, Any] | None:
            labels = pod["metadata"].get("labels") or {}
            return training_result(labels["sdxl.io/finetune"]) if "sdxl.io/finetune" in labels else None

        async def finetunes_succeeded() -> bool:
            await finish_bound_pods(cluster, finished, training)
            return sum(1 for obj in await custom(cluster, "sdxlfinetunes")
                       if (obj.get("status") or {}).get("phase") == "Succeeded") >= args.finetunes

        await poll_until(finetunes_succeeded, timeout, "every fine-tune Succeeded")
        finetunes_s = time.monotonic() - started
        await asyncio.gather(*(cluster.request(
            "POST", f"/apis/sdxl.io/v1alpha1/namespaces/{NAMESPACE}/sdxldeployments",
            deployment_manifest(i, args.finetunes)) for i in range(args.count)))

        compile_results: dict[str, dict[str, Any]] = {}
        server_ready: set[str] = set()

        async def deployments_ready() -> bool:
            for job in await cluster.jobs():
                if is_compile_job(job) and job["metadata"]["name"] not in compile_results:
                    compile_results[job["metadata"]["name"]] = compile_result(job)
            await finish_bound_pods(cluster, finished, lambda pod: compile_results.get(
                (pod["metadata"].get("labels") or {}).get("batch.kubernetes.io/job-name", "")))
            servers = [pod for pod in await cluster.list_objects(
                f"/api/v1/namespaces/{NAMESPACE}/pods", f"{MANAGED},app.kubernetes.io/name=sdxl-server")
                if pod["spec"].get("nodeName") and pod["metadata"]["name"] not in server_ready]
            for pod in servers:
                server_ready.add(pod["metadata"]["name"])
            await asyncio.gather(*(set_pod_ready(cluster, pod, True) for pod in servers))
            return sum(ready(obj.get("status")) for obj in await custom(cluster, "sdxldeployments")) >= args.count

        await poll_until(deployments_ready, timeout, "every deployment Ready")
        setup_s = time.monotonic() - started
        quiet_s = await until_quiet(lambda: cluster.sampler.cpu_seconds, timeout)
        await asyncio.sleep(args.settle)

        pid = cluster.sampler.process.pid
        requests_before = await dispatched(cluster)
        lines_before, cpu_before = count_lines(cluster.log_path), cluster.sampler.cpu_seconds
        plane_before = cluster.control_plane_cpu()
        await asyncio.sleep(args.window)
        rest = {"requests": await dispatched(cluster) - requests_before,
                "log_lines": count_lines(cluster.log_path) - lines_before,
                "cpu_s": cluster.sampler.cpu_seconds - cpu_before,
                "control_plane_cpu_s": cluster.control_plane_cpu() - plane_before,
                "rss": rss(pid)}

        samples: dict[str, list[float]] = {"deployment_not_ready": [], "deployment_ready_again": [],
                                           "finetune_job_done": []}
        controllers: list[float] = []
        step = max(1, args.count // max(1, args.flips))
        for flip in range(args.flips):
            name = deployment_name(flip * step % args.count)
            pods = await cluster.list_objects(f"/api/v1/namespaces/{NAMESPACE}/pods",
                                              f"{MANAGED},app.kubernetes.io/name=sdxl-server,sdxl.io/deployment={name}")
            pod = pods[0]
            for is_ready, kind in ((False, "deployment_not_ready"), (True, "deployment_ready_again")):
                wanted = 1 if is_ready else 0
                # When the change was written, and when the controllers had it in the Deployment's status.
                moments: dict[str, float] = {}

                async def change(pod: dict[str, Any] = pod, is_ready: bool = is_ready,
                                 moments: dict[str, float] = moments) -> None:
                    await set_pod_ready(cluster, pod, is_ready)
                    moments["changed"] = time.monotonic()

                async def reflected(name: str = name, wanted: int = wanted, is_ready: bool = is_ready,
                                    moments: dict[str, float] = moments) -> bool:
                    if "controllers" not in moments:
                        deployment = await cluster.request(
                            "GET", f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments/{name}")
                        if int((deployment.get("status") or {}).get("readyReplicas") or 0) == wanted:
                            moments["controllers"] = time.monotonic() - moments["changed"]
                    status = await custom_status(cluster, "sdxldeployments", name)
                    return ready(status) if is_ready else int(status.get("readyReplicas") or 0) == 0

                samples[kind].append(await timed(change, reflected, timeout))
                if "controllers" in moments:
                    controllers.append(moments["controllers"])
        for index in range(args.finetune_changes):
            name = f"change-{index:02d}"
            await cluster.create_finetunes([name])

            async def bound(name: str = name) -> bool:
                return any(pod["spec"].get("nodeName") for pod in await cluster.list_objects(
                    f"/api/v1/namespaces/{NAMESPACE}/pods", f"sdxl.io/finetune={name}"))

            await poll_until(bound, timeout, f"{name}'s pod bound")

            async def finish(name: str = name) -> None:
                await finish_bound_pods(cluster, finished, lambda pod: training_result(name) if (
                    pod["metadata"].get("labels") or {}).get("sdxl.io/finetune") == name else None)

            async def succeeded(name: str = name) -> bool:
                return (await custom_status(cluster, "sdxlfinetunes", name)).get("phase") == "Succeeded"

            samples["finetune_job_done"].append(await timed(finish, succeeded, timeout))
        peak = cluster.sampler.peak
        log_path = cluster.log_path
        result = result_of("real", args, setup_s, rest, samples, peak, log_path)
        result["finetunes_setup_s"] = round(finetunes_s, 1)
        result["operator_quiet_after_s"] = round(quiet_s, 1)
        result["controllers_to_deployment_status_s"] = summary({"all": controllers})
    return result


# ---------------------------------------------------------------- results


def result_of(plane: str, args: argparse.Namespace, setup_s: float, rest: dict[str, Any],
              samples: dict[str, list[float]], peak: int, log_path: Path) -> dict[str, Any]:
    window = args.window
    result: dict[str, Any] = {
        "control_plane": plane,
        "deployments": args.count,
        "finetunes": args.finetunes,
        "status_interval_s": args.interval,
        "setup_s": round(setup_s, 1),
        "window_s": window,
        "requests_per_s": round(rest["requests"] / window, 2),
        "requests_in_window": rest["requests"],
        "log_lines_per_min": round(rest["log_lines"] * 60 / window, 1),
        "operator_cpu_s_per_min": round(rest["cpu_s"] * 60 / window, 2),
        "rest_rss_mb": megabytes(rest["rss"]),
        "peak_rss_mb": megabytes(peak),
        "change_to_status": summary(samples),
        "operator_log": str(log_path),
    }
    if "requests_by_kind" in rest:
        result["requests_by_kind"] = rest["requests_by_kind"]
    if "control_plane_cpu_s" in rest:
        result["control_plane_cpu_s_per_min"] = round(rest["control_plane_cpu_s"] * 60 / window, 2)
    p95 = result["change_to_status"]["p95_s"]
    result["met"] = {
        "requests": result["requests_per_s"] <= TARGET_REQUESTS_PER_S,
        "p95": p95 is not None and p95 <= TARGET_P95_S,
        "rss": result["peak_rss_mb"] <= TARGET_RSS_MB,
        "log_lines": result["log_lines_per_min"] <= TARGET_LOG_LINES_PER_MIN,
    }
    return result


def print_table(result: dict[str, Any]) -> None:
    change = result["change_to_status"]
    rows = [
        ("control plane", result["control_plane"]),
        ("Ready SDXLDeployments / Succeeded SDXLFineTunes", f"{result['deployments']} / {result['finetunes']}"),
        ("setup until all settled", f"{result['setup_s']:.0f} s"),
        ("then until the operator was quiet", f"{result.get('operator_quiet_after_s', 0):.0f} s"),
        (f"operator requests/s at rest (goal <= {TARGET_REQUESTS_PER_S:g})",
         f"{result['requests_per_s']:.2f}  ({result['requests_in_window']} in {result['window_s']:g} s)"),
        (f"p95 change -> status (goal <= {TARGET_P95_S:g} s)",
         f"{change['p95_s']} s  (p50 {change['p50_s']} s, max {change['max_s']} s, n={change['count']})"),
        (f"operator peak RSS (goal <= {TARGET_RSS_MB:g} MB)", f"{result['peak_rss_mb']:.1f} MB"),
        ("operator RSS at rest", f"{result['rest_rss_mb']:.1f} MB"),
        ("log lines/min at rest, default level (goal 0)", f"{result['log_lines_per_min']:g}"),
        ("operator CPU s/min at rest", f"{result['operator_cpu_s_per_min']:.2f}"),
    ]
    if "control_plane_cpu_s_per_min" in result:
        rows.append(("control plane CPU s/min at rest", f"{result['control_plane_cpu_s_per_min']:.2f}"))
    if "controllers_to_deployment_status_s" in result:
        controllers = result["controllers_to_deployment_status_s"]
        rows.append(("  of which pod -> Deployment status (Kubernetes' controllers)",
                     f"p50 {controllers['p50_s']} s, p95 {controllers['p95_s']} s"))
    for kind, values in change["samples"].items():
        if values:
            rows.append((f"  {kind}", f"p50 {statistics.median(values):.3f} s, max {max(values):.3f} s, n={len(values)}"))
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    for kind, count in list((result.get("requests_by_kind") or {}).items())[:8]:
        print(f"  requests at rest: {kind}: {count}")
    print("goals met: " + ", ".join(f"{goal} {'yes' if ok else 'NO'}" for goal, ok in result["met"].items()))


def environment_entry(text: str) -> tuple[str, str]:
    """``KEY=VALUE`` from the command line as a pair."""
    key, separator, value = text.partition("=")
    if not key or not separator:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key, value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--control-plane", choices=("real", "emulator"), default="real")
    parser.add_argument("--count", type=int, default=1000, help="Ready SDXLDeployments")
    parser.add_argument("--finetunes", type=int, default=200, help="Succeeded SDXLFineTunes they serve")
    parser.add_argument("--window", type=float, default=60.0, help="seconds measured at rest")
    parser.add_argument("--settle", type=float, default=15.0, help="seconds waited after everything settled")
    parser.add_argument("--flips", type=int, default=10, help="server replicas made unready, then ready again")
    parser.add_argument("--finetune-changes", type=int, default=5, help="new fine-tunes whose Job finishes")
    parser.add_argument("--interval", type=float, default=10.0,
                        help="the operator's status interval, seconds (the production default)")
    parser.add_argument("--timeout", type=float, default=1200.0, help="give up after this many seconds per stage")
    parser.add_argument("--label", default="", help="added to the JSON (e.g. before / after)")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--operator-env", type=environment_entry, action="append", default=[], metavar="KEY=VALUE",
                        help="set in the emulator run's operator environment (repeatable), e.g. an allocator setting")
    args = parser.parse_args(argv)
    args.operator_env = dict(args.operator_env)
    if args.operator_env and args.control_plane == "real":
        parser.error("--operator-env applies to the emulator run only (the real run's operator is the sandbox's)")

    runner = bench_real if args.control_plane == "real" else bench_emulator
    result = run_stopping_on_sigterm(runner(args))
    result.update({"label": args.label, "operator_env": args.operator_env, "machine": machine(),
                   "goals": {"requests_per_s": TARGET_REQUESTS_PER_S, "p95_change_to_status_s": TARGET_P95_S,
                             "peak_rss_mb": TARGET_RSS_MB, "log_lines_per_min": TARGET_LOG_LINES_PER_MIN}})
    print_table(result)
    path = args.json or RESULTS / f"operator_at_rest_{args.control_plane}{'_' + args.label if args.label else ''}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
