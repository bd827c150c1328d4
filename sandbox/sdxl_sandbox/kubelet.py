"""The kubelet of the sandbox: runs each pod's container as a local process and reports pod status.

Per pod (one container; the operator's pods have one): prepare the volumes as folders, start the
process (``container_launch``), report ``Running`` with ``podIP`` 127.0.0.1, probe readiness, and when
the process ends report ``terminated`` with the exit code, a reason (``Completed``, ``Error``, or
``OOMKilled`` when something other than the sandbox SIGKILLed it) and the message from the
termination-log file (or the log's tail, with ``FallbackToLogsOnError``). ``restartPolicy: Never``
makes the pod ``Succeeded``/``Failed``; ``Always`` restarts the process after a back-off, reporting
``CrashLoopBackOff`` meanwhile. A pod that disappears from the API (deleted, garbage-collected) has
its process stopped. Pods this kubelet did not start and that are already past ``Pending`` are left
alone. While a pod runs, its ConfigMap volumes follow their ConfigMaps (every
``CONFIGMAP_SYNC_SECONDS``; the kubelet's own sync period is about a minute, which tests need not wait),
so a server that re-reads a mounted file sees a change without a restart.

Against the real control plane the kubelet serves named nodes only (``node_names``: the pods the
scheduler bound to them) and finishes deletions as kubelet does: a pod marked for deletion has its
process stopped within the pod's grace period, then is removed from the API for good (grace 0).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime
import logging
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import aiohttp

from sdxl_sandbox.api_client import KubeClient, object_path
from sdxl_sandbox.container_launch import LOOPBACK, LaunchPlan, plan_launch
from sdxl_sandbox.local_process import LocalProcess
from sdxl_sandbox.path_mapping import VolumeNotReady, prepare_volumes, refresh_configmap_volumes
from sdxl_sandbox.probes import ReadinessProbe

log = logging.getLogger("sdxl_sandbox")
NODE_NAME = "sandbox"
MESSAGE_LIMIT = 4096
FALLBACK_LOG_LINES = 80
FALLBACK_LOG_BYTES = 2048
SIGKILL = 9
MAX_BACKOFF_SECONDS = 60.0
RETRY_SECONDS = 1.0  # a pod whose ConfigMap/Secret is missing tries again this often
CONFIGMAP_SYNC_SECONDS = 2.0  # how often a running pod's ConfigMap volumes are brought up to date


def now_rfc3339() -> str:
    return datetime.datetime.now(tz=datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclasses.dataclass
class PodRun:
    """What the kubelet knows about one pod it runs."""

    pod: dict[str, Any]
    container: dict[str, Any]
    pod_dir: Path
    process: LocalProcess | None = None
    probe: ReadinessProbe | None = None
    started_at: str = ""
    restart_count: int = 0
    last_terminated: dict[str, Any] | None = None
    restart_at: float | None = None
    finished: bool = False
    terminating: bool = False  # marked for deletion: out of Service routing, process stopping
    reported: dict[str, Any] | None = None
    log_text: str = ""
    volumes_synced_at: float = 0.0

    @property
    def key(self) -> tuple[str, str]:
        meta = self.pod["metadata"]
        return str(meta.get("namespace")), str(meta["name"])

    @property
    def ready(self) -> bool:
        return bool(self.process is not None and self.process.exit_code is None and self.probe is not None
                    and self.probe.ready and not self.terminating)

    @property
    def ports(self) -> Mapping[str, int]:
        return self.process.plan.ports if self.process is not None else {}


def _termination_message(run: PodRun, plan: LaunchPlan, exit_code: int) -> str:
    message = ""
    with contextlib.suppress(OSError):
        message = plan.termination_log.read_text(encoding="utf-8", errors="replace")
    if not message.strip() and exit_code != 0 and \
            run.container.get("terminationMessagePolicy") == "FallbackToLogsOnError":
        tail = "\n".join(run.log_text.splitlines()[-FALLBACK_LOG_LINES:])
        message = tail.encode("utf-8")[-FALLBACK_LOG_BYTES:].decode("utf-8", errors="ignore")
    return message.encode("utf-8")[:MESSAGE_LIMIT].decode("utf-8", errors="ignore")


class Kubelet:
    """Runs the pods of the API server as local processes (see the module docstring)."""

    def __init__(self, client: KubeClient, workdir: Path, *, threads: int,
                 log_sink: Callable[[str, str, str], None], on_stopping: Callable[[], None] = lambda: None,
                 node_names: frozenset[str] | None = None) -> None:
        self._on_stopping = on_stopping  # called before a process is told to stop: take it out of routing
        self._node_names = node_names  # None: every pod (the emulator schedules nothing)
        self._terminating: set[str] = set()  # uids whose deletion is being finished
        self._deleted: set[str] = set()  # uids deleted for good (a finalizer may keep them listed a while)
        self._client = client
        self._workdir = workdir
        self._threads = threads
        self._log_sink = log_sink
        self.runs: dict[str, PodRun] = {}  # by pod uid
        self._stopping: set[asyncio.Task[None]] = set()
        self._probe_session: aiohttp.ClientSession | None = None

    @property
    def pvc_root(self) -> Path:
        return self._workdir / "pvcs"

    def _session(self) -> aiohttp.ClientSession:
        if self._probe_session is None:
            self._probe_session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True))
        return self._probe_session

    async def sync(self, pods: list[dict[str, Any]]) -> None:
        """One pass over every pod of the API server."""
        if self._node_names is not None:
            pods = [pod for pod in pods if (pod.get("spec") or {}).get("nodeName") in self._node_names]
        live = {pod["metadata"].get("uid"): pod for pod in pods}
        self._deleted &= set(live)
        gone = [self.runs.pop(uid) for uid in list(self.runs) if uid not in live]
        if gone:
            self._on_stopping()
        for stopped in gone:
            self._stop_in_background(stopped)
        for uid, pod in live.items():
            try:
                run = self.runs.get(uid)
                if self._node_names is not None and pod["metadata"].get("deletionTimestamp"):
                    self._finish_deletion(uid, pod, run)
                elif run is not None:
                    run.pod = pod
                    await self._tend(run)
                elif (pod.get("status") or {}).get("phase") in (None, "Pending") and \
                        not pod["metadata"].get("deletionTimestamp"):
                    await self._admit(pod)
            except Exception as exc:  # one pod's trouble must not stall the others; the next pass retries
                log.warning("pod %s/%s: %s", pod["metadata"].get("namespace"), pod["metadata"].get("name"), exc)

    def _stop_in_background(self, run: PodRun) -> None:
        if run.process is None:
            return
        grace = float(run.pod.get("spec", {}).get("terminationGracePeriodSeconds") or 10)
        task = asyncio.create_task(run.process.stop(grace))
        self._stopping.add(task)
        task.add_done_callback(self._stopping.discard)

    def _finish_deletion(self, uid: str, pod: dict[str, Any], run: PodRun | None) -> None:
        """Stop the pod's process within its grace period, then delete the pod for good (in the background)."""
        if uid in self._terminating or uid in self._deleted:
            return
        self._terminating.add(uid)
        meta, spec = pod["metadata"], pod.get("spec") or {}
        grace = float(meta.get("deletionGracePeriodSeconds") or spec.get("terminationGracePeriodSeconds") or 30)
        if run is not None:
            run.terminating = True
            self._on_stopping()

        async def finish() -> None:
            try:
                if run is not None and run.process is not None:
                    await run.process.stop(grace)
                await self._client.request("DELETE", object_path(pod), {
                    "apiVersion": "v1", "kind": "DeleteOptions", "gracePeriodSeconds": 0,
                    "preconditions": {"uid": uid}})
                self._deleted.add(uid)
            except Exception as exc:  # gone already, or the API is busy: the next pass looks again
                log.debug("finishing the deletion of pod %s/%s: %s", meta.get("namespace"), meta.get("name"), exc)
            finally:
                self._terminating.discard(uid)

        task = asyncio.create_task(finish())
        self._stopping.add(task)
        task.add_done_callback(self._stopping.discard)

    def log_of(self, namespace: str, name: str) -> tuple[Path, bool] | None:
        """The log file of pod ``namespace/name`` and whether its process runs, if this kubelet runs it."""
        for run in self.runs.values():
            if run.key == (namespace, name):
                return run.pod_dir / "log.txt", run.process is not None and run.process.exit_code is None
        return None

    async def close(self) -> None:
        """Stop every process this kubelet started and wait until they are gone."""
        for run in list(self.runs.values()):
            self._stop_in_background(run)
        self.runs.clear()
        if self._stopping:
            await asyncio.gather(*self._stopping, return_exceptions=True)
        if self._probe_session is not None:
            await self._probe_session.close()

    def running_pids(self) -> dict[tuple[str, str], int]:
        """(namespace, pod) -> pid of every process still running (stopping ones included)."""
        return {run.key: run.process.pid for run in self.runs.values()
                if run.process is not None and run.process.exit_code is None}

    @property
    def stopping(self) -> int:
        return len(self._stopping)

    # ----- starting -----

    async def _admit(self, pod: dict[str, Any]) -> None:
        meta = pod["metadata"]
        containers = (pod.get("spec") or {}).get("containers") or []
        if not containers:
            return
        pod_dir = self._workdir / "pods" / str(meta.get("namespace")) / f"{meta['name']}-{str(meta['uid'])[:8]}"
        run = PodRun(pod=pod, container=containers[0], pod_dir=pod_dir)
        self.runs[str(meta["uid"])] = run
        await self._start(run)

    async def _start(self, run: PodRun) -> bool:
        namespace = run.key[0]
        try:
            configmaps = {c["metadata"]["name"]: c for c in await self._client.list("v1", "configmaps", namespace)}
            secrets = {s["metadata"]["name"]: s for s in await self._client.list("v1", "secrets", namespace)}
            spec = run.pod.get("spec") or {}
            filesystem = prepare_volumes(spec, run.container, pod_dir=run.pod_dir, pvc_root=self.pvc_root,
                                         configmaps=configmaps, secrets=secrets)
            plan = plan_launch(run.pod, run.container, filesystem, pod_dir=run.pod_dir, pvc_root=self.pvc_root,
                               configmaps=configmaps, secrets=secrets, threads=self._threads)
        except VolumeNotReady as exc:
            run.restart_at = time.monotonic() + RETRY_SECONDS
            await self._report(run, self._waiting_status(run, "ContainerCreating", str(exc)))
            return False
        except (ValueError, FileNotFoundError, KeyError) as exc:
            run.restart_at = time.monotonic() + RETRY_SECONDS
            await self._report(run, self._waiting_status(run, "CreateContainerConfigError", str(exc)))
            return False

        def on_output(text: str) -> None:
            run.log_text = (run.log_text + text)[-200_000:]
            self._log_sink(run.key[0], run.key[1], text)

        try:
            run.process = await LocalProcess.start(plan, cwd=run.pod_dir / "cwd", log_file=run.pod_dir / "log.txt",
                                                   on_output=on_output)
        except OSError as exc:
            run.restart_at = time.monotonic() + RETRY_SECONDS
            await self._report(run, self._waiting_status(run, "RunContainerError", f"cannot start {plan.argv[0]}: {exc}"))
            return False
        run.probe = ReadinessProbe(run.container.get("readinessProbe"), plan.ports)
        run.started_at = now_rfc3339()
        run.restart_at = None
        await self._report(run, self._running_status(run))
        return True

    # ----- running -----

    async def _tend(self, run: PodRun) -> None:
        if run.finished:
            return
        if run.process is None or run.restart_at is not None:
            if run.restart_at is not None and time.monotonic() >= run.restart_at:
                await self._start(run)
            return
        exit_code = run.process.exit_code
        if exit_code is None:
            await self._sync_configmap_volumes(run)
            assert run.probe is not None  # set with the process
            await run.probe.check(self._session())
            await self._report(run, self._running_status(run))
            return
        await self._on_exit(run, run.process, exit_code)

    async def _sync_configmap_volumes(self, run: PodRun) -> None:
        spec = run.pod.get("spec") or {}
        if time.monotonic() - run.volumes_synced_at < CONFIGMAP_SYNC_SECONDS or \
                not any("configMap" in volume for volume in spec.get("volumes") or []):
            return
        run.volumes_synced_at = time.monotonic()
        configmaps = {c["metadata"]["name"]: c for c in await self._client.list("v1", "configmaps", run.key[0])}
        changed = refresh_configmap_volumes(spec, run.container, pod_dir=run.pod_dir, configmaps=configmaps)
        if changed:
            log.info("pod %s/%s: updated ConfigMap volume(s) %s", *run.key, ", ".join(changed))

    async def _on_exit(self, run: PodRun, process: LocalProcess, exit_code: int) -> None:
        killed_by_other = process.killed_by_signal == SIGKILL and not process.stopped_by_us
        terminated = {
            "exitCode": exit_code,
            "reason": "Completed" if exit_code == 0 else "OOMKilled" if killed_by_other else "Error",
            "message": _termination_message(run, process.plan, exit_code),
            "startedAt": run.started_at, "finishedAt": now_rfc3339(),
            "containerID": f"sandbox://{process.pid}",
        }
        policy = (run.pod.get("spec") or {}).get("restartPolicy") or "Always"
        if policy == "Never" or (policy == "OnFailure" and exit_code == 0):
            run.finished = True
            await self._report(run, {
                "phase": "Succeeded" if exit_code == 0 else "Failed",
                "conditions": self._conditions(ready=False),
                "containerStatuses": [self._container_status(run, {"terminated": terminated}, ready=False)],
            })
            return
        run.restart_count += 1
        run.last_terminated = terminated
        backoff = min(MAX_BACKOFF_SECONDS, 5.0 * 2 ** (run.restart_count - 1))
        run.restart_at = time.monotonic() + backoff
        waiting = {"reason": "CrashLoopBackOff",
                   "message": f"back-off {backoff:.0f}s restarting failed container={run.container['name']}"}
        await self._report(run, {
            "phase": "Running", "podIP": LOOPBACK, "hostIP": LOOPBACK,
            "conditions": self._conditions(ready=False),
            "containerStatuses": [self._container_status(run, {"waiting": waiting}, ready=False)],
        })

    # ----- status -----

    def _conditions(self, *, ready: bool) -> list[dict[str, Any]]:
        flag = "True" if ready else "False"
        return [{"type": kind, "status": status} for kind, status in (
            ("PodScheduled", "True"), ("Initialized", "True"), ("ContainersReady", flag), ("Ready", flag))]

    def _container_status(self, run: PodRun, state: dict[str, Any], *, ready: bool) -> dict[str, Any]:
        status: dict[str, Any] = {
            "name": run.container["name"], "image": run.container.get("image", ""), "imageID": "",
            "ready": ready, "started": "running" in state, "restartCount": run.restart_count, "state": state,
        }
        if run.last_terminated is not None:
            status["lastState"] = {"terminated": run.last_terminated}
        return status

    def _running_status(self, run: PodRun) -> dict[str, Any]:
        ready = run.ready
        return {
            "phase": "Running", "podIP": LOOPBACK, "hostIP": LOOPBACK, "startTime": run.started_at,
            "conditions": self._conditions(ready=ready),
            "containerStatuses": [self._container_status(run, {"running": {"startedAt": run.started_at}},
                                                         ready=ready)],
        }

    def _waiting_status(self, run: PodRun, reason: str, message: str) -> dict[str, Any]:
        return {
            "phase": "Pending", "conditions": self._conditions(ready=False),
            "containerStatuses": [self._container_status(run, {"waiting": {"reason": reason, "message": message}},
                                                         ready=False)],
        }

    async def _report(self, run: PodRun, status: dict[str, Any]) -> None:
        if status == run.reported:
            return
        try:
            await self._client.patch_status(run.pod, status)
        except Exception:  # the pod may have been deleted meanwhile; the next pass sees that
            return
        run.reported = status
