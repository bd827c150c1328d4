"""The Kopf peering priority of an operator replica that was given none: the newest started is active.

With peering, Kopf pauses a replica while a peer of higher priority is alive, and pauses every replica
while two share the highest one (Kopf 1.45: "Pausing all operators, including self"). The replicas of
one Deployment all get the same arguments, so each picks its own priority at start: its start time in
milliseconds, so that in a rolling update the new version takes over at once and the old one idles
until it stops, and three random digits below it, so that two replicas started in the same
millisecond still differ. The value stays below 2**53, exact in any JSON reader.
"""

from __future__ import annotations

import random
import time

TIE_BREAKER_RANGE = 1000


def replica_priority(started: float | None = None, rng: random.Random | None = None) -> int:
    """The priority of a replica started at ``started`` (seconds since the epoch; default: now)."""
    milliseconds = int((time.time() if started is None else started) * 1000)
    return milliseconds * TIE_BREAKER_RANGE + (rng or random.Random()).randrange(TIE_BREAKER_RANGE)
