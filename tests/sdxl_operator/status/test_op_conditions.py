"""Conditions keep lastTransitionTime unless their status changes."""

from __future__ import annotations

import datetime

from sdxl_operator.status.conditions import (
    find_condition,
    is_true,
    make_condition,
    merge_conditions,
    parse_time,
    rfc3339,
)

T0 = datetime.datetime(2026, 11, 26, 12, 0, 0, tzinfo=datetime.timezone.utc)
T1 = T0 + datetime.timedelta(minutes=5)


def test_same_status_keeps_transition_time_but_takes_new_reason_and_message() -> None:
    before = [make_condition("Training", True, "Running", "step 1", now=T0, generation=1)]
    after = merge_conditions(before, [make_condition("Training", True, "Running", "step 9", now=T1, generation=1)])
    assert after == [{
        "type": "Training", "status": "True", "reason": "Running", "message": "step 9",
        "lastTransitionTime": "2026-11-26T12:00:00Z", "observedGeneration": 1,
    }]


def test_status_change_moves_transition_time_and_other_conditions_stay() -> None:
    before = [
        make_condition("Accepted", True, "JobCreated", "", now=T0, generation=1),
        make_condition("Training", True, "Running", "", now=T0, generation=1),
    ]
    after = merge_conditions(before, [make_condition("Training", False, "Succeeded", "done", now=T1, generation=1)])
    assert [c["type"] for c in after] == ["Accepted", "Training"]
    assert find_condition(after, "Training") == {
        "type": "Training", "status": "False", "reason": "Succeeded", "message": "done",
        "lastTransitionTime": "2026-11-26T12:05:00Z", "observedGeneration": 1,
    }
    assert is_true(after, "Accepted") and not is_true(after, "Training") and not is_true(after, "Ready")


def test_time_round_trip() -> None:
    assert parse_time(rfc3339(T1)) == T1
    assert parse_time("2026-11-26T12:05:00+00:00") == T1
    assert parse_time("") is None and parse_time("not a time") is None
