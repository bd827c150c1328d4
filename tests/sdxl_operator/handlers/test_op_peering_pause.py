"""A replica stands by while its peering object names a live peer of higher priority (Kopf's rule)."""

from __future__ import annotations

import datetime

import pytest

from sdxl_operator.handlers.peering_pause import led_by_peer

NOW = datetime.datetime(2026, 1, 1, 12, 0, 0, tzinfo=datetime.timezone.utc)


def peer(priority: int, seconds_ago: int, lifetime: int = 60) -> dict[str, object]:
    # As Kopf writes it: UTC without an offset.
    seen = (NOW - datetime.timedelta(seconds=seconds_ago)).replace(tzinfo=None)
    return {"priority": priority, "lastseen": seen.isoformat(), "lifetime": lifetime}


@pytest.mark.parametrize(("peers", "led"), [
    ({}, False),
    ({"newer": peer(200, 10)}, True),
    ({"newer": peer(200, 61)}, False),  # dead: its lifetime is over
    ({"self": peer(100, 1)}, False),  # ourselves, or a peer of the same priority: Kopf's own warning case
    ({"older": peer(50, 1), "newer-dead": peer(300, 600)}, False),
])
def test_led_by_a_live_peer_of_higher_priority(peers: dict[str, object], led: bool) -> None:
    assert led_by_peer({"status": peers}, 100, NOW) is led


def test_no_peering_object_leads_nothing() -> None:
    assert not led_by_peer(None, 0, NOW)
