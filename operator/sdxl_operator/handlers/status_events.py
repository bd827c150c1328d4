"""Posting the Events of a status change on the resource (which ones: :mod:`sdxl_operator.status.transition_events`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import kopf

from sdxl_operator.status.transition_events import PhaseEvent, transition_events


def post_transition_events(body: kopf.Body, previous: Mapping[str, Any], new: Mapping[str, Any],
                           phase_event: PhaseEvent) -> None:
    """Post on ``body`` the Events of its status going from ``previous`` to ``new``."""
    for event in transition_events(previous, new, phase_event):
        kopf.event(body, type=event.type, reason=event.reason, message=event.message)
