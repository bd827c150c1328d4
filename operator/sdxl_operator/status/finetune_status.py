"""The status of an SDXLFineTune, computed from its Job, the Job's pods and the last progress line.

A pure function of what was read from the API (no I/O, ``now`` passed in), so every outcome is a
table test. Phases:

* ``Pending`` — no running pod yet. A pod that cannot be scheduled for longer than the pending grace
  or whose image cannot be pulled keeps the phase ``Pending`` (Kubernetes keeps trying, and a new
  GPU node or a fixed pull secret resumes the run without a new object) but sets ``failure`` with
  reason ``Unschedulable`` / ``ImagePullFailed`` and condition ``Ready=False`` with that reason, so
  the cause is on the custom resource and not only in Events. It is cleared once the pod runs.
* ``Training`` — the trainer container runs; ``progress`` follows its progress lines.
* ``Succeeded`` — the Job completed; ``artifacts`` (and ``loraSha256`` from the metrics) and
  ``quality`` (the quality report, summarised in the Ready condition) come from the trainer's
  termination message.
* ``Failed`` — the Job failed. The reason: ``DeadlineExceeded`` (the Job's deadline), else what the
  trainer reported (``InvalidInput``, ``OutOfMemory``, ``StorageError``...), else ``OutOfMemory`` for
  an ``OOMKilled`` container, else ``BackoffLimitExceeded``; ``InvalidSpec`` comes from validation.

Conditions: ``Accepted`` (spec valid, children created), ``Scheduled`` (the pod has a node),
``Training`` (the trainer runs) and ``Ready`` (the LoRA is available; an SDXLDeployment waits on it).
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from sdxl_contract import artifact_keys
from sdxl_contract.digests import is_sha256, normalise_sha256
from sdxl_contract.failure_reasons import FailureReason
from sdxl_contract.workload_protocol import (
    PROGRESS_ETA_SECONDS,
    PROGRESS_LOSS,
    PROGRESS_STEP,
    PROGRESS_TOTAL_STEPS,
)
from sdxl_operator.status.conditions import UNKNOWN, make_condition, merge_conditions, rfc3339
from sdxl_operator.status.failure_record import failure_record
from sdxl_operator.status.finetune_quality import quality_from_result, quality_summary
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
    terminated_state,
)
from sdxl_operator.status.status_message import tail_of
from sdxl_operator.status.workload_output import parse_result

PENDING = "Pending"
TRAINING = "Training"
SUCCEEDED = "Succeeded"
FAILED = "Failed"
TERMINAL_PHASES = frozenset({SUCCEEDED, FAILED})


def is_terminal(status: Mapping[str, Any] | None) -> bool:
    """Whether the fine-tune has finished (its status will not change any more)."""
    return bool(status) and (status or {}).get("phase") in TERMINAL_PHASES


def initial_status(*, job_name: str, now: datetime.datetime, generation: int) -> dict[str, Any]:
    """Status right after the ConfigMap and Job were created."""
    return {
        "phase": PENDING,
        "observedGeneration": generation,
        "trainingJob": job_name,
        "conditions": [
            make_condition("Accepted", True, "JobCreated", f"created training Job {job_name}", now=now,
                           generation=generation),
            make_condition("Ready", False, PENDING, "the training Job has not started yet", now=now,
                           generation=generation),
        ],
    }


def failed_status(
    reason: FailureReason, message: str, *, now: datetime.datetime, generation: int,
    previous: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Status of a fine-tune that failed before its Job could run (e.g. the API refused the Job)."""
    message = tail_of(message)
    conditions = merge_conditions((previous or {}).get("conditions"), [
        make_condition("Ready", False, reason.value, message, now=now, generation=generation),
    ])
    return {
        "phase": FAILED,
        "observedGeneration": generation,
        "conditions": conditions,
        "failure": {"reason": reason.value, "message": message, "time": rfc3339(now)},
        "completionTime": rfc3339(now),
    }


def waiting_status(
    reason: FailureReason, message: str, *, now: datetime.datetime, generation: int,
    previous: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Status of a fine-tune that cannot start yet for a reason someone can fix (a missing claim).

    Phase Pending with ``failure`` set, as for an unschedulable pod: the run starts once it is fixed.
    """
    previous = previous or {}
    message = tail_of(message)
    return {
        "phase": PENDING,
        "observedGeneration": generation,
        "conditions": merge_conditions(previous.get("conditions"), [
            make_condition("Accepted", False, reason.value, message, now=now, generation=generation),
            make_condition("Ready", False, reason.value, message, now=now, generation=generation),
        ]),
        "failure": failure_record(reason.value, message, now=now, previous=previous.get("failure")),
    }


def invalid_spec_status(
    errors: Sequence[str], *, now: datetime.datetime, generation: int, previous: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Status of a fine-tune whose spec failed validation: Failed / InvalidSpec, no Job."""
    message = tail_of("; ".join(errors))
    conditions = merge_conditions((previous or {}).get("conditions"), [
        make_condition("Accepted", False, FailureReason.INVALID_SPEC.value, message, now=now, generation=generation),
        make_condition("Ready", False, FailureReason.INVALID_SPEC.value, message, now=now, generation=generation),
    ])
    return {
        "phase": FAILED,
        "observedGeneration": generation,
        "conditions": conditions,
        "failure": {"reason": FailureReason.INVALID_SPEC.value, "message": message, "time": rfc3339(now)},
        "completionTime": rfc3339(now),
    }


def _progress(
    latest: Mapping[str, Any] | None, previous: Mapping[str, Any] | None, now: datetime.datetime
) -> dict[str, Any] | None:
    if latest is None:
        return dict(previous) if previous else None
    progress = dict(latest)
    same = previous is not None and all(previous.get(k) == progress.get(k) for k in ("step", "loss"))
    progress["updatedAt"] = previous["updatedAt"] if same and previous and previous.get("updatedAt") else rfc3339(now)
    return progress


TRAINING_FAILURE = FailureWording(
    deadline="training did not finish within the deadline{limit} and was stopped. Lower training.maxSteps "
             "or ask the operator's administrator for a longer SDXL_TRAIN_DEADLINE_SECONDS.",
    reported="the trainer failed with {reason}",
    oom_killed="the trainer was killed for exceeding its memory limit (OOMKilled). Raise spec.resources.memory, "
               "or lower training.resolution or training.batchSize.",
)


def _training_failure(job: Mapping[str, Any], condition: Mapping[str, Any], ended: LastExit
                      ) -> tuple[FailureReason, str]:
    """A failed training Job none of the shared precedence explains: the Job gave up, or the trainer's words."""
    exit_code = ended.exit_code
    job_reason = condition.get("reason") or ""
    job_message = condition.get("message") or ""
    reported, reported_message = ended.reported_reason, ended.reported_message
    detail = reported_message or ended.message
    detail_text = f" Last error: {detail}" if detail else ""
    exit_text = f" (exit code {exit_code})" if exit_code is not None else ""
    if job_reason == "BackoffLimitExceeded":
        backoff = (job.get("spec") or {}).get("backoffLimit")
        tries = f" {int(backoff) + 1} times" if isinstance(backoff, int) else ""
        return (FailureReason.BACKOFF_LIMIT_EXCEEDED,
                tail_of(f"the training pod failed{tries}{exit_text}; the Job gave up.{detail_text}"))
    if reported is FailureReason.INTERNAL_ERROR:
        return FailureReason.INTERNAL_ERROR, tail_of(reported_message or "the trainer failed")
    return (FailureReason.INTERNAL_ERROR,
            tail_of(f"the training Job failed ({job_reason or 'no reason given'}: {job_message}){exit_text}.{detail_text}"))


def _artifacts(result: Mapping[str, Any] | None) -> dict[str, str]:
    if not result:
        return {}
    reported = result.get("artifacts") or {}
    artifacts = {key: reported[key] for key in artifact_keys.TRAIN_ARTIFACTS if isinstance(reported.get(key), str)}
    digest = (result.get("metrics") or {}).get(artifact_keys.LORA_SHA256)
    if isinstance(digest, str) and is_sha256(digest):
        artifacts[artifact_keys.LORA_SHA256] = normalise_sha256(digest)
    return artifacts


def compute_finetune_status(
    *,
    job_name: str,
    job: Mapping[str, Any] | None,
    pods: Sequence[Mapping[str, Any]],
    progress: Mapping[str, Any] | None,
    now: datetime.datetime,
    previous: Mapping[str, Any] | None,
    generation: int,
    pending_grace_seconds: float,
    events: Sequence[Mapping[str, Any]] = (),
) -> dict[str, Any]:
    """The new ``status`` of a fine-tune whose Job was created (see the module docstring).

    ``events``: the Job's ``FailedCreate`` Events, read while it has no pod (PodCreationFailed).
    """
    previous = previous or {}
    if is_terminal(previous):
        return dict(previous)  # finished runs never change

    status: dict[str, Any] = {"observedGeneration": generation, "trainingJob": job_name}
    job_status = (job or {}).get("status") or {}
    start = previous.get("startTime") or job_status.get("startTime")
    if start:
        status["startTime"] = start
    updates: list[dict[str, Any]] = []

    def condition(type_: str, value: bool | str, reason: str, message: str) -> None:
        updates.append(make_condition(type_, value, reason, message, now=now, generation=generation))

    new_progress = _progress(progress, previous.get("progress"), now)
    done = job_condition(job, "Complete", "SuccessCriteriaMet") if job else None
    failed = job_condition(job, "Failed", "FailureTarget") if job else None

    if job is not None and done is not None:
        terminated = last_terminated([p for p in pods if (p.get("status") or {}).get("phase") == SUCCEEDED]) or \
            last_terminated(pods)
        result = parse_result(str((terminated or {}).get("message") or ""))
        artifacts = _artifacts(result)
        metrics = (result or {}).get("metrics") or {}
        steps, final_loss = metrics.get(artifact_keys.STEPS), metrics.get(artifact_keys.FINAL_LOSS)
        if new_progress is not None or isinstance(steps, int):
            final = dict(new_progress or {})
            if isinstance(steps, int):
                final[PROGRESS_STEP] = steps
                final.setdefault(PROGRESS_TOTAL_STEPS, steps)
            if isinstance(final_loss, (int, float)) and not isinstance(final_loss, bool):
                final[PROGRESS_LOSS] = float(final_loss)
            final[PROGRESS_ETA_SECONDS] = 0
            final["updatedAt"] = rfc3339(now)
            new_progress = final
        status["phase"] = SUCCEEDED
        status["completionTime"] = job_status.get("completionTime") or rfc3339(now)
        if artifacts:
            status["artifacts"] = artifacts
            ready_message = f"LoRA written to {artifacts.get('lora', 'the output location')}"
        else:
            ready_message = "training succeeded but the trainer reported no artifacts in its termination message"
        quality = quality_from_result(result)
        if quality is not None:
            status["quality"] = quality
            summary = quality_summary(quality)
            if summary:
                ready_message = f"{ready_message}; {summary}"
        condition("Training", False, SUCCEEDED, "training finished")
        condition("Ready", True, SUCCEEDED, ready_message)
    elif job is not None and failed is not None:
        ended = job_failure(job, failed, pods, TRAINING_FAILURE, _training_failure)
        # The time the Job failed, not a sticky one: a failed run ends with the Job's own failure.
        failure: dict[str, Any] = {"reason": ended.reason.value, "message": ended.message,
                                   "time": ended.time or rfc3339(now)}
        if ended.exit_code is not None:
            failure["exitCode"] = ended.exit_code
        status["phase"] = FAILED
        status["failure"] = failure
        status["completionTime"] = failure["time"]
        condition("Training", False, ended.reason.value, ended.message)
        condition("Ready", False, ended.reason.value, ended.message)
    else:
        _running_or_pending(status, condition, job, pods, now, pending_grace_seconds, previous, events)

    if new_progress is not None:
        status["progress"] = new_progress
    status["conditions"] = merge_conditions(previous.get("conditions"), updates)
    return status


def _running_or_pending(
    status: dict[str, Any],
    condition: Callable[[str, bool | str, str, str], None],
    job: Mapping[str, Any] | None,
    pods: Sequence[Mapping[str, Any]],
    now: datetime.datetime,
    pending_grace_seconds: float,
    previous: Mapping[str, Any],
    events: Sequence[Mapping[str, Any]],
) -> None:
    pod = newest_pod(pods)
    refused = pod_creation_failure(job, events) if job is not None and pod is None else None
    if refused is not None:
        # Waiting, not failed: the Job controller keeps trying, and a fixed quota or account resumes it.
        status["phase"] = PENDING
        status["failure"] = failure_record(refused.reason.value, refused.message, now=now,
                                           previous=previous.get("failure"))
        condition("Scheduled", UNKNOWN, refused.reason.value, refused.message)
        condition("Ready", False, refused.reason.value, refused.message)
        return
    if job is None or pod is None:
        what = "the training Job does not exist yet" if job is None else "the Job has not created a pod yet"
        status["phase"] = PENDING
        condition("Scheduled", UNKNOWN, "WaitingForPod", what)
        condition("Ready", False, PENDING, what)
        return
    diagnosis = diagnose_pod(pod, now=now, pending_grace_seconds=pending_grace_seconds)
    pod_phase = (pod.get("status") or {}).get("phase")
    if isinstance(diagnosis, PodProblem):
        status["phase"] = PENDING
        status["failure"] = failure_record(diagnosis.reason.value, diagnosis.message, now=now,
                                           previous=previous.get("failure"))
        scheduled = diagnosis.reason is not FailureReason.UNSCHEDULABLE
        condition("Scheduled", scheduled, "PodScheduled" if scheduled else diagnosis.reason.value,
                  "the pod has a node" if scheduled else diagnosis.message)
        condition("Training", False, diagnosis.reason.value, diagnosis.message)
        condition("Ready", False, diagnosis.reason.value, diagnosis.message)
        return
    if isinstance(diagnosis, PodWaiting):
        status["phase"] = PENDING
        scheduled = diagnosis.reason != "WaitingForNode"
        condition("Scheduled", scheduled, "PodScheduled" if scheduled else diagnosis.reason,
                  "the pod has a node" if scheduled else diagnosis.message)
        condition("Training", False, diagnosis.reason, diagnosis.message)
        condition("Ready", False, PENDING, diagnosis.message)
        return
    condition("Scheduled", True, "PodScheduled", "the pod has a node")
    if pod_phase == FAILED:
        # The Job will start another attempt (its own failure would have ended the run above).
        status["phase"] = TRAINING if previous.get("phase") == TRAINING else PENDING
        terminated = terminated_state(pod) or {}
        message = f"attempt failed (exit code {terminated.get('exitCode', '?')}); the Job retries"
        condition("Training", False, "Retrying", message)
        condition("Ready", False, status["phase"], message)
        return
    status["phase"] = TRAINING
    condition("Training", True, "Running", "the trainer is running")
    condition("Ready", False, TRAINING, "training is in progress")

