"""Why a workload Job failed, in one order of precedence for every controller that runs Jobs.

A training Job and a compile Job fail the same ways, so their reason is decided the same way:
``DeadlineExceeded`` (the Job's ``activeDeadlineSeconds`` stopped it), else what the workload reported
in its termination message (``InvalidInput``, ``OutOfMemory``, ``StorageError``...), else
``OutOfMemory`` for an ``OOMKilled`` container, else what the controller makes of the rest (the Job
gave up after its retries, or the workload's own words). Only the wording is each controller's.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from sdxl_contract.failure_reasons import FailureReason
from sdxl_operator.status.pod_problems import LastExit, last_exit
from sdxl_operator.status.status_message import tail_of


@dataclasses.dataclass(frozen=True)
class JobFailure:
    """A failed Job's reason, its message for people, the exit code and when the Job failed."""

    reason: FailureReason
    message: str
    exit_code: int | None
    time: str | None  # the Job's Failed condition's lastTransitionTime, when it has one


@dataclasses.dataclass(frozen=True)
class FailureWording:
    """What a controller says about its own workload failing.

    ``deadline`` takes ``{limit}`` (`` of 3600s``, or nothing when the Job has no deadline);
    ``reported`` takes ``{reason}`` for a workload that reported a reason without a message.
    """

    deadline: str
    reported: str
    oom_killed: str


# What the controller makes of a failure none of the precedence above explains: the Job, its Failed
# condition and how its last container ended, to a reason and a message.
Otherwise = Callable[[Mapping[str, Any], Mapping[str, Any], LastExit], tuple[FailureReason, str]]


def job_failure(job: Mapping[str, Any], condition: Mapping[str, Any], pods: Sequence[Mapping[str, Any]],
                wording: FailureWording, otherwise: Otherwise) -> JobFailure:
    """Why ``job`` failed, from its ``Failed`` condition ``condition`` and its ``pods``."""
    ended = last_exit(pods)
    when = condition.get("lastTransitionTime")

    def failure(reason: FailureReason, message: str) -> JobFailure:
        return JobFailure(reason, message, ended.exit_code, when)

    if condition.get("reason") == "DeadlineExceeded":
        deadline = (job.get("spec") or {}).get("activeDeadlineSeconds")
        return failure(FailureReason.DEADLINE_EXCEEDED,
                       wording.deadline.format(limit=f" of {deadline}s" if deadline else ""))
    reported = ended.reported_reason
    if reported is not None and reported is not FailureReason.INTERNAL_ERROR:
        return failure(reported, tail_of(ended.reported_message or wording.reported.format(reason=reported.value)))
    if ended.oom_killed:
        return failure(FailureReason.OUT_OF_MEMORY, wording.oom_killed)
    return failure(*otherwise(job, condition, ended))
