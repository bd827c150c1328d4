"""The workload protocol: progress lines on stdout, one result in the termination log.

See DESIGN.md and ``sdxl_contract.workload_protocol``. The operator reads both: the pod's last progress line for `status.progress`, and
the termination message (kept under the kubelet's 4 KiB limit) for the result.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from sdxl_contract.failure_reasons import WORKLOAD_REASONS
from sdxl_contract.workload_protocol import (
    FAILED,
    PROGRESS_ETA_SECONDS,
    PROGRESS_EVENT,
    PROGRESS_LOSS,
    PROGRESS_STEP,
    PROGRESS_TOTAL_STEPS,
    SUCCEEDED,
    TERMINATION_LOG_ENV,
    TERMINATION_LOG_PATH,
    TERMINATION_MESSAGE_LIMIT,
)


class WorkloadError(Exception):
    """A failure with a reason from the closed list and a message a person can act on."""

    def __init__(self, reason: str, message: str) -> None:
        if reason not in WORKLOAD_REASONS:
            raise ValueError(f"unknown failure reason {reason!r}")
        super().__init__(message)
        self.reason = reason
        self.message = message


def emit_event(event: str, **fields: Any) -> None:
    """Write one JSON object as one line on stdout and flush it (the operator tails the log)."""
    line = json.dumps({"event": event, **fields}, separators=(", ", ": "), default=str)
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def emit_progress(step: int, total_steps: int, loss: float | None = None,
                  eta_seconds: float | None = None, **extra: Any) -> None:
    fields: dict[str, Any] = {PROGRESS_STEP: int(step), PROGRESS_TOTAL_STEPS: int(total_steps)}
    if loss is not None:
        fields[PROGRESS_LOSS] = round(float(loss), 6)
    if eta_seconds is not None:
        fields[PROGRESS_ETA_SECONDS] = round(eta_seconds)
    emit_event(PROGRESS_EVENT, **fields, **extra)


def termination_log_path(explicit: str | None = None) -> Path | None:
    """Where the result goes: the flag, else $SDXL_TERMINATION_LOG, else the kubelet's path if writable."""
    if explicit:
        return Path(explicit)
    env = os.environ.get(TERMINATION_LOG_ENV)
    if env:
        return Path(env)
    default = Path(TERMINATION_LOG_PATH)
    if default.exists() and os.access(default, os.W_OK):
        return default
    return None


def encode_result(result: dict[str, Any]) -> str:
    """JSON under the 4 KiB limit: a long message is shortened, never the structure."""
    text = json.dumps(result, separators=(",", ":"), default=str)
    if len(text.encode()) <= TERMINATION_MESSAGE_LIMIT:
        return text
    trimmed = dict(result)
    message = str(trimmed.get("message", ""))
    overflow = len(text.encode()) - TERMINATION_MESSAGE_LIMIT + 32
    trimmed["message"] = message[: max(0, len(message) - overflow)] + " (truncated)"
    text = json.dumps(trimmed, separators=(",", ":"), default=str)
    if len(text.encode()) > TERMINATION_MESSAGE_LIMIT and isinstance(trimmed.get("metrics"), dict):
        # The quality report is the largest metric and the one nothing else depends on: it goes first,
        # so the LoRA's digest (which keys compiled models) stays.
        trimmed["metrics"] = {k: v for k, v in trimmed["metrics"].items() if k != "quality"}
        text = json.dumps(trimmed, separators=(",", ":"), default=str)
    if len(text.encode()) > TERMINATION_MESSAGE_LIMIT:
        # Metrics are the least important part; drop them before ever cutting JSON mid-structure.
        trimmed.pop("metrics", None)
        text = json.dumps(trimmed, separators=(",", ":"), default=str)
    return text


def write_result(result: dict[str, Any], explicit_path: str | None = None) -> None:
    """Write the result JSON to the termination log (and echo it as a `result` event)."""
    text = encode_result(result)
    emit_event("result", **json.loads(text))
    path = termination_log_path(explicit_path)
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def report_success(artifacts: dict[str, str], metrics: dict[str, Any] | None = None,
                   explicit_path: str | None = None) -> None:
    write_result({"status": SUCCEEDED, "artifacts": artifacts, "metrics": metrics or {}}, explicit_path)


def report_failure(reason: str, message: str, explicit_path: str | None = None) -> None:
    sys.stderr.write(f"error: {message}\n")
    write_result({"status": FAILED, "reason": reason, "message": message,
                  "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}, explicit_path)


def is_out_of_memory(err: BaseException) -> bool:
    name = type(err).__name__
    return name in {"OutOfMemoryError", "MemoryError"} or "out of memory" in str(err).lower()
