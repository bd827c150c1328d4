"""``status.failure`` of a resource that waits or fails: reason, message, exit code and since when.

The time is sticky: while the reason stays the same, it stays the time the failure was first seen
(an unschedulable pod reported on every pass is one failure that started once, not a new one each
time); a new reason starts a new time.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import Any

from sdxl_operator.status.conditions import rfc3339


def failure_record(reason: str, message: str, *, now: datetime.datetime, previous: Mapping[str, Any] | None,
                   exit_code: int | None = None, time: str | None = None) -> dict[str, Any]:
    """``status.failure``; ``previous`` is the one read, ``time`` when the failure happened (else ``now``)."""
    old = previous or {}
    failure: dict[str, Any] = {"reason": reason, "message": message,
                               "time": old["time"] if old.get("reason") == reason and old.get("time")
                               else time or rfc3339(now)}
    if exit_code is not None:
        failure["exitCode"] = exit_code
    return failure
