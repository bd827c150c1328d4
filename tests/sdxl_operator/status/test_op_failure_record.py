"""``status.failure`` keeps the time a failure was first seen while its reason stays the same."""

from __future__ import annotations

import datetime

from sdxl_operator.status.failure_record import failure_record

NOW = datetime.datetime(2026, 11, 26, 12, 5, tzinfo=datetime.timezone.utc)
BEFORE = {"reason": "Unschedulable", "message": "old words", "time": "2026-11-26T12:00:00Z"}


def test_the_same_reason_keeps_its_first_time_and_takes_the_new_message() -> None:
    assert failure_record("Unschedulable", "new words", now=NOW, previous=BEFORE) == {
        "reason": "Unschedulable", "message": "new words", "time": "2026-11-26T12:00:00Z"}


def test_a_new_reason_starts_at_its_own_time_else_now() -> None:
    assert failure_record("OutOfMemory", "m", now=NOW, previous=BEFORE)["time"] == "2026-11-26T12:05:00Z"
    assert failure_record("OutOfMemory", "m", now=NOW, previous=BEFORE, time="2026-11-26T12:03:00Z",
                          exit_code=137) == {"reason": "OutOfMemory", "message": "m", "time": "2026-11-26T12:03:00Z",
                                             "exitCode": 137}
    assert failure_record("OutOfMemory", "m", now=NOW, previous=None)["time"] == "2026-11-26T12:05:00Z"
