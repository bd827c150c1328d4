"""Reading what a workload reports: progress lines on stdout and the result in its termination message.

Both are the workload protocol (:mod:`sdxl_contract.workload_protocol`): one JSON object per stdout line, e.g.
``{"event": "progress", "step": 120, "totalSteps": 500, "loss": 0.113, "etaSeconds": 310}``, and a
JSON result of at most 4 KiB in the termination message. Anything that is not such JSON (a Python
traceback, a log line) is ignored here and shown as plain text by the caller.
"""

from __future__ import annotations

import json
import math
from typing import Any

from sdxl_contract.workload_protocol import (
    FAILED,
    PROGRESS_ETA_SECONDS,
    PROGRESS_EVENT,
    PROGRESS_LOSS,
    PROGRESS_STEP,
    PROGRESS_TOTAL_STEPS,
    SUCCEEDED,
)


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def parse_progress_line(line: str) -> dict[str, Any] | None:
    """``{step, totalSteps?, loss?, etaSeconds?}`` from one progress line, else None."""
    line = line.strip()
    if not line.startswith("{"):
        return None
    try:
        event = json.loads(line)
    except ValueError:
        return None
    if not isinstance(event, dict) or event.get("event") != PROGRESS_EVENT:
        return None
    step = event.get(PROGRESS_STEP)
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        return None
    progress: dict[str, Any] = {PROGRESS_STEP: step}
    total = event.get(PROGRESS_TOTAL_STEPS)
    if isinstance(total, int) and not isinstance(total, bool) and total >= 0:
        progress[PROGRESS_TOTAL_STEPS] = total
    loss = _number(event.get(PROGRESS_LOSS))
    if loss is not None:
        progress[PROGRESS_LOSS] = loss
    eta = _number(event.get(PROGRESS_ETA_SECONDS))
    if eta is not None and eta >= 0:
        progress[PROGRESS_ETA_SECONDS] = eta
    return progress


def last_progress(log_text: str | None) -> dict[str, Any] | None:
    """The last progress event in a log (tail), or None when it has none."""
    for line in reversed((log_text or "").splitlines()):
        progress = parse_progress_line(line)
        if progress is not None:
            return progress
    return None


def parse_result(message: str | None) -> dict[str, Any] | None:
    """The workload result from a termination message, or None when it is not one."""
    if not message or not message.strip().startswith("{"):
        return None
    try:
        result = json.loads(message)
    except ValueError:
        return None
    if not isinstance(result, dict) or result.get("status") not in (SUCCEEDED, FAILED):
        return None
    return result
