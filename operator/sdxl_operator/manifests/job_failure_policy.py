"""The ``podFailurePolicy`` of every workload Job (training and compile).

A workload that exits with the contract's permanent-failure code (an invalid input, a spec it cannot
run) fails the same way on every retry, so its Job fails at once instead of using up its backoff
limit; a pod evicted or preempted (a spot reclaim, a drained node) is a disruption, not the
workload's fault, and does not count as a failed attempt.
"""

from __future__ import annotations

from typing import Any

from sdxl_contract.exit_codes import PERMANENT_FAILURE_EXIT_CODE


def pod_failure_policy(container: str) -> dict[str, Any]:
    """Fail the Job at once on the workload's permanent-failure exit code; disruptions do not count."""
    return {
        "rules": [
            {
                "action": "FailJob",
                "onExitCodes": {"containerName": container, "operator": "In", "values": [PERMANENT_FAILURE_EXIT_CODE]},
            },
            {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
        ]
    }
