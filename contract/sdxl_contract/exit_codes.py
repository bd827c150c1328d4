"""The exit codes of a failed workload, which the operator's Jobs act on.

A Job fails at once (no retry, a ``podFailurePolicy`` rule) on :data:`PERMANENT_FAILURE_EXIT_CODE`:
a retry of bad input, a compiler error or running out of memory on the same node cannot succeed.
The rest (a storage hiccup, an unexpected error) exits :data:`RETRYABLE_FAILURE_EXIT_CODE` and is
retried up to the Job's backoffLimit, resuming from the last checkpoint.
"""

from __future__ import annotations

from sdxl_contract.failure_reasons import FailureReason

PERMANENT_FAILURE_EXIT_CODE = 2
RETRYABLE_FAILURE_EXIT_CODE = 1
PERMANENT_REASONS: frozenset[str] = frozenset({
    FailureReason.INVALID_INPUT.value, FailureReason.INVALID_SPEC.value,
    FailureReason.COMPILE_FAILED.value, FailureReason.OUT_OF_MEMORY.value,
})


def exit_code_for(reason: str) -> int:
    """The exit code of a workload that failed with ``reason``."""
    return PERMANENT_FAILURE_EXIT_CODE if reason in PERMANENT_REASONS else RETRYABLE_FAILURE_EXIT_CODE
