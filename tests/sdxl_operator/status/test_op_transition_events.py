"""The Events of a status change, the same rule for fine-tunes and deployments."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from sdxl_operator.status.transition_events import NORMAL, WARNING, StatusEvent, transition_events

UNSCHEDULABLE = {"reason": "Unschedulable", "message": "no GPU node", "time": "2026-11-26T12:00:00Z"}
PULL = {"reason": "ImagePullFailed", "message": "cannot pull", "time": "2026-11-26T12:01:00Z"}


def _running(status: Mapping[str, Any]) -> tuple[str, str] | None:
    return ("Running", "it runs") if status.get("phase") == "Running" else None


@pytest.mark.parametrize(("previous", "new", "expected"), [
    # A new phase without a failure: the controller's Normal event, or none where it names none.
    ({"phase": "Pending"}, {"phase": "Running"}, [StatusEvent(NORMAL, "Running", "it runs")]),
    ({}, {"phase": "Pending"}, []),
    # A new phase with a failure: a Warning with it, never the Normal event.
    ({"phase": "Running"}, {"phase": "Failed", "failure": PULL}, [StatusEvent(WARNING, "ImagePullFailed", "cannot pull")]),
    # The same phase: a Warning only when the failure's reason is new.
    ({"phase": "Pending"}, {"phase": "Pending", "failure": UNSCHEDULABLE},
     [StatusEvent(WARNING, "Unschedulable", "no GPU node")]),
    ({"phase": "Pending", "failure": UNSCHEDULABLE}, {"phase": "Pending", "failure": {**UNSCHEDULABLE, "message": "x"}},
     []),
    ({"phase": "Pending", "failure": UNSCHEDULABLE}, {"phase": "Pending", "failure": PULL},
     [StatusEvent(WARNING, "ImagePullFailed", "cannot pull")]),
    ({"phase": "Running"}, {"phase": "Running"}, []),
])
def test_events_of_a_status_change(previous: dict[str, Any], new: dict[str, Any], expected: list[StatusEvent]) -> None:
    assert transition_events(previous, new, _running) == expected
