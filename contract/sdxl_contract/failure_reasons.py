"""The closed list of failure reasons shown in ``status.failure.reason`` and in conditions.

Two parts. The workloads report :data:`WORKLOAD_REASONS` in their termination message, so the two
sides never need to translate. The operator alone finds the others, in the cluster around the
workload: an object in the way of a child (``NameConflict``), a child the API server refuses
(``Rejected``), a missing claim (``StorageNotFound``), pods a Job cannot create
(``PodCreationFailed``), a Deployment's ``ReplicaFailure`` and ``ProgressDeadlineExceeded``. A
workload cannot claim those. Both CRDs list :data:`ALL_REASONS` as the enum of ``status.failure.reason``.
"""

from __future__ import annotations

import enum


class FailureReason(str, enum.Enum):
    """Why a fine-tune, compile or deployment failed (or is stuck)."""

    INVALID_SPEC = "InvalidSpec"
    INVALID_INPUT = "InvalidInput"
    FINETUNE_FAILED = "FineTuneFailed"
    UNSCHEDULABLE = "Unschedulable"
    IMAGE_PULL_FAILED = "ImagePullFailed"
    OUT_OF_MEMORY = "OutOfMemory"
    COMPILE_FAILED = "CompileFailed"
    DEADLINE_EXCEEDED = "DeadlineExceeded"
    BACKOFF_LIMIT_EXCEEDED = "BackoffLimitExceeded"
    CRASH_LOOP_BACK_OFF = "CrashLoopBackOff"
    STORAGE_ERROR = "StorageError"
    INTERNAL_ERROR = "InternalError"
    # Found by the operator only (see the module docstring).
    NAME_CONFLICT = "NameConflict"
    REJECTED = "Rejected"
    STORAGE_NOT_FOUND = "StorageNotFound"
    POD_CREATION_FAILED = "PodCreationFailed"
    REPLICA_FAILURE = "ReplicaFailure"
    PROGRESS_DEADLINE_EXCEEDED = "ProgressDeadlineExceeded"


OPERATOR_ONLY_REASONS: frozenset[FailureReason] = frozenset({
    FailureReason.NAME_CONFLICT, FailureReason.REJECTED, FailureReason.STORAGE_NOT_FOUND,
    FailureReason.POD_CREATION_FAILED, FailureReason.REPLICA_FAILURE, FailureReason.PROGRESS_DEADLINE_EXCEEDED,
})
ALL_REASONS: tuple[str, ...] = tuple(reason.value for reason in FailureReason)
WORKLOAD_REASONS: tuple[str, ...] = tuple(reason.value for reason in FailureReason
                                          if reason not in OPERATOR_ONLY_REASONS)


def parse_reason(value: object, default: FailureReason = FailureReason.INTERNAL_ERROR) -> FailureReason:
    """The reason a workload named in ``value`` (its termination message), or ``default`` if unknown."""
    if isinstance(value, str) and value in WORKLOAD_REASONS:
        return FailureReason(value)
    return default
