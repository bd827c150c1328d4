"""Why a workload pod is not running, in the closed list of failure reasons.

Shared by every controller that waits on pods (training and compile Jobs, inference Deployments),
so "no GPU node" and "cannot pull the image" read the same everywhere. Image pull errors count at
once (Kubernetes keeps retrying, but a wrong image name or missing pull secret rarely fixes itself);
an unschedulable pod counts only after a grace period, because a cluster autoscaler may be adding a
GPU node right now.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Iterable, Mapping
from typing import Any

from sdxl_contract.failure_reasons import FailureReason, parse_reason
from sdxl_operator.status.conditions import find_condition, parse_time
from sdxl_operator.status.workload_output import parse_result

IMAGE_PULL_REASONS = frozenset({"ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull"})


@dataclasses.dataclass(frozen=True)
class PodProblem:
    """A reason from the closed list and a message for people."""

    reason: FailureReason
    message: str


@dataclasses.dataclass(frozen=True)
class PodWaiting:
    """The pod is not running yet for an ordinary reason (still within the grace, creating, ...)."""

    reason: str
    message: str


def container_statuses(pod: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    status = pod.get("status") or {}
    return [*(status.get("initContainerStatuses") or []), *(status.get("containerStatuses") or [])]


def newest_pod(pods: Iterable[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """The most recently created pod (ties broken by name), or None."""
    ordered = sorted(
        pods,
        key=lambda pod: (str(pod.get("metadata", {}).get("creationTimestamp") or ""),
                         str(pod.get("metadata", {}).get("name") or "")),
    )
    return ordered[-1] if ordered else None


def terminated_state(pod: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The ``terminated`` state of the pod's first container that has one (current, else last)."""
    for container in container_statuses(pod):
        terminated = (container.get("state") or {}).get("terminated")
        if terminated:
            return terminated  # type: ignore[no-any-return]
        last = (container.get("lastState") or {}).get("terminated")
        if last:
            return last  # type: ignore[no-any-return]
    return None


def last_terminated(pods: Iterable[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """The termination state of the newest pod that has one."""
    pod = newest_pod(pod for pod in pods if terminated_state(pod) is not None)
    return terminated_state(pod) if pod is not None else None


@dataclasses.dataclass(frozen=True)
class LastExit:
    """How the newest container that ended among a Job's pods ended."""

    exit_code: int | None
    oom_killed: bool
    message: str  # the termination message as written (the result JSON, or a log tail)
    result: Mapping[str, Any] | None  # the workload's result, when the message is one

    @property
    def reported_reason(self) -> FailureReason | None:
        """The reason the workload gave for failing, when it reported a failure."""
        if self.result and self.result.get("status") == "Failed":
            return parse_reason(self.result.get("reason"))
        return None

    @property
    def reported_message(self) -> str:
        return str((self.result or {}).get("message") or "")


def last_exit(pods: Iterable[Mapping[str, Any]]) -> LastExit:
    terminated = last_terminated(pods) or {}
    exit_code = terminated.get("exitCode")
    message = str(terminated.get("message") or "")
    return LastExit(
        exit_code=exit_code if isinstance(exit_code, int) and not isinstance(exit_code, bool) else None,
        oom_killed=terminated.get("reason") == "OOMKilled",
        message=message,
        result=parse_result(message),
    )


def job_condition(job: Mapping[str, Any], *types: str) -> Mapping[str, Any] | None:
    """The first of the Job's conditions of one of ``types`` whose status is "True", or None."""
    for condition in (job.get("status") or {}).get("conditions") or []:
        if condition.get("type") in types and condition.get("status") == "True":
            return condition  # type: ignore[no-any-return]
    return None


def _crash_loop(container: Mapping[str, Any]) -> PodProblem:
    """A container the kubelet keeps restarting: out of memory, or why it last exited."""
    name = container.get("name")
    last = (container.get("lastState") or {}).get("terminated") or {}
    restarts = container.get("restartCount")
    restarted = f"restarted {restarts} times, " if isinstance(restarts, int) else ""
    if last.get("reason") == "OOMKilled":
        return PodProblem(
            FailureReason.OUT_OF_MEMORY,
            f"container {name} is killed for exceeding its memory limit (OOMKilled) and restarts in a loop "
            f"({restarted.rstrip(', ')}). Raise spec.resources.memory.",
        )
    result = parse_result(str(last.get("message") or ""))
    detail = str((result or {}).get("message") or last.get("message") or "").strip()
    detail_text = f": {detail[-1000:]}" if detail else ""
    return PodProblem(
        FailureReason.CRASH_LOOP_BACK_OFF,
        f"container {name} keeps crashing ({restarted}last exit code {last.get('exitCode', '?')}){detail_text}",
    )


def diagnose_pod(
    pod: Mapping[str, Any], *, now: datetime.datetime, pending_grace_seconds: float
) -> PodProblem | PodWaiting | None:
    """A problem, an ordinary wait, or None when the pod is past scheduling and image pulling."""
    for container in container_statuses(pod):
        waiting = (container.get("state") or {}).get("waiting") or {}
        if waiting.get("reason") in IMAGE_PULL_REASONS:
            image = container.get("image") or "the image"
            detail = waiting.get("message") or waiting["reason"]
            return PodProblem(
                FailureReason.IMAGE_PULL_FAILED,
                f"cannot pull {image} for container {container.get('name')}: {detail}. "
                "Check the image name and tag in the operator's settings and the registry credentials.",
            )
        if waiting.get("reason") == "CrashLoopBackOff":
            return _crash_loop(container)
    status = pod.get("status") or {}
    scheduled = find_condition(status.get("conditions"), "PodScheduled")
    if scheduled is not None and scheduled.get("status") == "False":
        message = scheduled.get("message") or "no node fits the pod"
        since = parse_time(scheduled.get("lastTransitionTime")) or parse_time(
            pod.get("metadata", {}).get("creationTimestamp")
        )
        waited = (now - since).total_seconds() if since is not None else 0.0
        if scheduled.get("reason") == "Unschedulable" and waited >= pending_grace_seconds:
            return PodProblem(
                FailureReason.UNSCHEDULABLE,
                f"no node can run the pod after {int(waited)}s: {message}. Check that a node offers the "
                "requested devices, CPU, memory and ephemeral storage and matches the node selector and "
                "tolerations.",
            )
        return PodWaiting("WaitingForNode", f"waiting for a node: {message}")
    if status.get("phase", "Pending") == "Pending":
        for container in container_statuses(pod):
            waiting = (container.get("state") or {}).get("waiting") or {}
            if waiting.get("reason"):
                detail = f": {waiting['message']}" if waiting.get("message") else ""
                return PodWaiting(str(waiting["reason"]), f"container {container.get('name')} is waiting "
                                  f"({waiting['reason']}{detail})")
        return PodWaiting("Starting", "the pod is starting")
    return None


FAILED_CREATE = "FailedCreate"


def failed_create_selector(job: Mapping[str, Any]) -> str:
    """The field selector of the Events the Job controller posts when it cannot create the Job's pod."""
    meta = job.get("metadata") or {}
    return f"involvedObject.kind=Job,involvedObject.name={meta.get('name')},reason={FAILED_CREATE}"


def _event_time(event: Mapping[str, Any]) -> str:
    return str(event.get("lastTimestamp") or event.get("eventTime") or
               (event.get("metadata") or {}).get("creationTimestamp") or "")


def pod_creation_failure(job: Mapping[str, Any], events: Iterable[Mapping[str, Any]]) -> PodProblem | None:
    """Why the Job controller cannot create the Job's pod, in the API server's words, or None.

    From the newest ``FailedCreate`` Event about this Job (this uid: an older Job of the same name is
    not this one): a missing ServiceAccount, an exceeded ResourceQuota, an admission webhook or policy
    that denied the pod. The Job controller keeps trying, so the resource keeps waiting with the reason.
    """
    meta = job.get("metadata") or {}
    mine = [event for event in events
            if event.get("reason") == FAILED_CREATE
            and (event.get("involvedObject") or {}).get("kind") == "Job"
            and (event.get("involvedObject") or {}).get("name") == meta.get("name")
            and (event.get("involvedObject") or {}).get("uid") in (None, meta.get("uid"))]
    if not mine:
        return None
    newest = max(mine, key=_event_time)
    return PodProblem(
        FailureReason.POD_CREATION_FAILED,
        f"the Job {meta.get('name')} cannot create its pod: {newest.get('message') or 'no message'}. Fix what the "
        "message names (the namespace's ServiceAccount, ResourceQuota or admission policy); the Job keeps trying",
    )


def deployment_problem(deployment: Mapping[str, Any]) -> PodProblem | None:
    """A Deployment's own report that it is stuck, in its controller's words, or None.

    ``ReplicaFailure=True``: its ReplicaSet cannot create pods (quota, admission, a missing
    ServiceAccount). ``Progressing=False`` with ``ProgressDeadlineExceeded``: the rollout made no
    progress within ``progressDeadlineSeconds``.
    """
    conditions = (deployment.get("status") or {}).get("conditions")
    failure = find_condition(conditions, "ReplicaFailure")
    if failure is not None and failure.get("status") == "True":
        return PodProblem(
            FailureReason.REPLICA_FAILURE,
            f"the server Deployment cannot create pods ({failure.get('reason') or 'ReplicaFailure'}): "
            f"{failure.get('message') or 'no message'}. Fix what the message names (the namespace's "
            "ServiceAccount, ResourceQuota or admission policy)",
        )
    progressing = find_condition(conditions, "Progressing")
    if progressing is not None and progressing.get("status") == "False" and \
            progressing.get("reason") == "ProgressDeadlineExceeded":
        return PodProblem(
            FailureReason.PROGRESS_DEADLINE_EXCEEDED,
            f"the server Deployment's rollout stopped progressing: {progressing.get('message') or 'no message'}. "
            "Look at the server pods (kubectl describe pods -l sdxl.io/deployment=NAME) for why",
        )
    return None
