"""What a compile Job says about its compile key: done (with the artifact), failed (with why), or not yet.

Pure, from the Job and its pods. The artifact URI comes from the compile's result in the termination
message (``artifacts.compiled``), else from the Job's ``sdxl.io/compiled-artifact`` annotation (the
URI the operator computed when it built the Job). Failure reasons: ``DeadlineExceeded`` (the Job's
deadline), else what the compile reported (``InvalidInput``, ``OutOfMemory``, ``CompileFailed``,
``StorageError``...), else ``OutOfMemory`` for an ``OOMKilled`` container, else ``CompileFailed`` with the
last error. A pod that cannot be scheduled or pulled is a :class:`PodProblem` while the Job goes on.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Mapping, Sequence
from typing import Any

from sdxl_contract import artifact_keys
from sdxl_contract.failure_reasons import FailureReason
from sdxl_operator.core.labels import ARTIFACT_ANNOTATION
from sdxl_operator.status.job_failure import FailureWording, job_failure
from sdxl_operator.status.pod_problems import (
    LastExit,
    PodProblem,
    PodWaiting,
    diagnose_pod,
    job_condition,
    last_terminated,
    newest_pod,
    pod_creation_failure,
)
from sdxl_operator.status.status_message import tail_of
from sdxl_operator.status.workload_output import parse_result


@dataclasses.dataclass(frozen=True)
class CompileDone:
    artifact: str
    cache_hit: bool


@dataclasses.dataclass(frozen=True)
class CompileFailed:
    reason: FailureReason
    message: str
    exit_code: int | None
    time: str | None


@dataclasses.dataclass(frozen=True)
class CompileRunning:
    """Not finished: ``problem`` when its pod is stuck (unschedulable, image pull), ``detail`` otherwise."""

    reason: str
    detail: str
    problem: PodProblem | None = None


CompileOutcome = CompileDone | CompileFailed | CompileRunning


def compile_outcome(
    job: Mapping[str, Any], pods: Sequence[Mapping[str, Any]], *, now: datetime.datetime,
    pending_grace_seconds: float, events: Sequence[Mapping[str, Any]] = (),
) -> CompileOutcome:
    """The state of the compile Job ``job`` (see the module docstring).

    ``events``: the Job's ``FailedCreate`` Events, which say why it has no pod (PodCreationFailed).
    """
    if job_condition(job, "Complete", "SuccessCriteriaMet") is not None:
        succeeded = [p for p in pods if (p.get("status") or {}).get("phase") == "Succeeded"]
        result = parse_result(str((last_terminated(succeeded) or {}).get("message") or "")) or {}
        reported = (result.get("artifacts") or {}).get(artifact_keys.COMPILED)
        annotated = ((job.get("metadata") or {}).get("annotations") or {}).get(ARTIFACT_ANNOTATION)
        artifact = reported if isinstance(reported, str) and reported else annotated
        return CompileDone(str(artifact or ""), bool((result.get("metrics") or {}).get(artifact_keys.CACHE_HIT)))
    failed = job_condition(job, "Failed", "FailureTarget")
    if failed is not None:
        failure = _failure(job, failed, pods)
        name = (job.get("metadata") or {}).get("name")
        if not name:
            return failure
        # A failed compile is not retried by itself (it would most likely fail the same way).
        hint = f" To compile again after fixing the cause, delete Job {name} (or change the spec)."
        return dataclasses.replace(failure, message=tail_of(failure.message.rstrip(".") + "." + hint))
    pod = newest_pod(pods)
    if pod is None:
        refused = pod_creation_failure(job, events)
        if refused is not None:
            return CompileRunning(refused.reason.value, refused.message, refused)
        return CompileRunning("CompileJobPending", "the compile Job has not started a pod yet")
    diagnosis = diagnose_pod(pod, now=now, pending_grace_seconds=pending_grace_seconds)
    if isinstance(diagnosis, PodProblem):
        return CompileRunning(diagnosis.reason.value, diagnosis.message, diagnosis)
    if isinstance(diagnosis, PodWaiting):
        return CompileRunning(diagnosis.reason, diagnosis.message)
    if (pod.get("status") or {}).get("phase") == "Failed":
        return CompileRunning("Retrying", "a compile attempt failed; the Job retries")
    return CompileRunning("CompileJobRunning", "the compile is running")


COMPILE_FAILURE = FailureWording(
    deadline="the compile did not finish within its deadline{limit} and was stopped; ask the "
             "operator's administrator for a longer SDXL_COMPILE_DEADLINE_SECONDS",
    reported="the compile failed with {reason}",
    oom_killed="the compile was killed for exceeding its memory limit (OOMKilled); compiling SDXL "
               "needs a node with about 128 GiB of memory in the compile pool",
)


def _compile_error(job: Mapping[str, Any], condition: Mapping[str, Any], ended: LastExit
                   ) -> tuple[FailureReason, str]:
    """A failed compile Job none of the shared precedence explains: CompileFailed with the last error."""
    detail = ended.reported_message or ended.message or str(condition.get("message") or "")
    exit_text = f" (exit code {ended.exit_code})" if ended.exit_code is not None else ""
    return (FailureReason.COMPILE_FAILED,
            tail_of(f"the compile Job failed{exit_text}: {detail or condition.get('reason') or 'no reason given'}"))


def _failure(job: Mapping[str, Any], condition: Mapping[str, Any], pods: Sequence[Mapping[str, Any]]
             ) -> CompileFailed:
    failed = job_failure(job, condition, pods, COMPILE_FAILURE, _compile_error)
    return CompileFailed(failed.reason, failed.message, failed.exit_code, failed.time)
