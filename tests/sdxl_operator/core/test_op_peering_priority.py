"""A replica's peering priority: a later start wins, replicas started together still differ."""

from __future__ import annotations

import random

from sdxl_operator.core.peering_priority import replica_priority


def test_a_later_replica_has_the_higher_priority() -> None:
    earlier = replica_priority(1_800_000_000.000, random.Random(999))
    later = replica_priority(1_800_000_000.001, random.Random(0))
    assert later > earlier


def test_replicas_started_in_the_same_millisecond_differ_and_stay_exact_in_json() -> None:
    started = 1_800_000_000.5
    priorities = {replica_priority(started, random.Random(seed)) for seed in range(20)}
    assert len(priorities) > 1
    assert all(priority < 2**53 for priority in priorities)  # a JSON number read as a double keeps it


def test_now_by_default() -> None:
    assert replica_priority() > replica_priority(1_700_000_000.0)
