"""The Events a status change deserves, decided once for both controllers.

People follow a resource with ``kubectl describe`` and ``kubectl get events``: each phase change gets
one Event (a Warning with the failure when the new status has one, else the controller's Normal event
for that phase, if it names one), and a failure whose reason changes within a phase gets a Warning.
A status recomputed with nothing new posts nothing.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

NORMAL = "Normal"
WARNING = "Warning"


@dataclasses.dataclass(frozen=True)
class StatusEvent:
    type: str  # NORMAL | WARNING
    reason: str
    message: str


# The controller's Normal event on entering the phase of ``status``: (reason, message), or None for none.
PhaseEvent = Callable[[Mapping[str, Any]], tuple[str, str] | None]


def transition_events(previous: Mapping[str, Any], new: Mapping[str, Any], phase_event: PhaseEvent
                      ) -> list[StatusEvent]:
    """The Events of going from status ``previous`` to ``new`` (see the module docstring)."""
    failure = new.get("failure") or {}
    warning = StatusEvent(WARNING, str(failure.get("reason")), str(failure.get("message")))
    if new.get("phase") != previous.get("phase"):
        if failure:
            return [warning]
        normal = phase_event(new)
        return [StatusEvent(NORMAL, *normal)] if normal is not None else []
    if failure and failure.get("reason") != (previous.get("failure") or {}).get("reason"):
        return [warning]
    return []
