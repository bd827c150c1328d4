"""Status conditions in the metav1.Condition shape.

``type``, ``status`` ("True" | "False" | "Unknown"), ``reason`` (CamelCase), ``message``,
``lastTransitionTime`` (RFC 3339) and ``observedGeneration``. As in Kubernetes,
``lastTransitionTime`` moves only when ``status`` changes; reason and message may change freely.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Mapping
from typing import Any

TRUE = "True"
FALSE = "False"
UNKNOWN = "Unknown"


def rfc3339(moment: datetime.datetime) -> str:
    """``2026-11-26T12:00:00Z`` (UTC, whole seconds), the format Kubernetes uses."""
    return moment.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(value: object) -> datetime.datetime | None:
    """Parse an RFC 3339 timestamp from the API (``Z`` or an offset); None when absent or unreadable."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=datetime.timezone.utc)
    return parsed


def make_condition(
    type_: str,
    status: bool | str,
    reason: str,
    message: str,
    *,
    now: datetime.datetime,
    generation: int | None,
) -> dict[str, Any]:
    """One condition; a bool ``status`` becomes "True"/"False"."""
    text = (TRUE if status else FALSE) if isinstance(status, bool) else status
    if text not in (TRUE, FALSE, UNKNOWN):
        raise ValueError(f"condition status must be True, False or Unknown, got {status!r}")
    condition: dict[str, Any] = {
        "type": type_,
        "status": text,
        "reason": reason,
        "message": message,
        "lastTransitionTime": rfc3339(now),
    }
    if generation is not None:
        condition["observedGeneration"] = generation
    return condition


def merge_conditions(
    previous: Iterable[Mapping[str, Any]] | None,
    updates: Iterable[Mapping[str, Any]],
) -> list[dict[str, Any]]:
    """Apply ``updates`` to ``previous``, keeping each old ``lastTransitionTime`` whose status is unchanged.

    Conditions not mentioned in ``updates`` are kept as they were; order is the first-seen order.
    """
    merged: dict[str, dict[str, Any]] = {}
    for condition in previous or ():
        merged[str(condition.get("type"))] = dict(condition)
    for update in updates:
        key = str(update["type"])
        new = dict(update)
        old = merged.get(key)
        if old is not None and old.get("status") == new.get("status") and old.get("lastTransitionTime"):
            new["lastTransitionTime"] = old["lastTransitionTime"]
        merged[key] = new
    return list(merged.values())


def find_condition(conditions: Iterable[Mapping[str, Any]] | None, type_: str) -> Mapping[str, Any] | None:
    """The condition of ``type_``, or None."""
    for condition in conditions or ():
        if condition.get("type") == type_:
            return condition
    return None


def is_true(conditions: Iterable[Mapping[str, Any]] | None, type_: str) -> bool:
    """Whether the condition of ``type_`` exists with status "True"."""
    condition = find_condition(conditions, type_)
    return condition is not None and condition.get("status") == TRUE
