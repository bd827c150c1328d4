"""The closed list of failure reasons shown in ``status.failure.reason`` and in conditions.

The workloads report the same strings in their termination message (CONTRACT.md), so the two sides
never need to translate.
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


ALL_REASONS: tuple[str, ...] = tuple(reason.value for reason in FailureReason)


def parse_reason(value: object, default: FailureReason = FailureReason.INTERNAL_ERROR) -> FailureReason:
    """The reason named by ``value`` (e.g. from a termination message), or ``default`` if unknown."""
    if isinstance(value, str):
        for reason in FailureReason:
            if reason.value == value:
                return reason
    return default
