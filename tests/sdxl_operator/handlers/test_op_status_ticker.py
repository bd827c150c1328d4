"""The status ticks: each followed resource every interval, none once dropped or while paused, a
bounded number at once, and a failing tick does not stop the next ones. Real asyncio time, short
intervals."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from sdxl_operator.handlers.status_ticker import StatusTicker

pytestmark = pytest.mark.asyncio

INTERVAL = 0.1


@contextlib.asynccontextmanager
async def running(ticker: StatusTicker, paused: Callable[[], Awaitable[bool]] | None = None
                  ) -> AsyncIterator[StatusTicker]:
    if paused is not None:
        ticker.pause_with(paused)
    try:
        yield ticker
    finally:
        await ticker.close()


async def test_a_followed_resource_ticks_every_interval_until_dropped() -> None:
    ticks: list[tuple[str, str]] = []

    async def tick(namespace: str, name: str) -> None:
        ticks.append((namespace, name))

    async with running(StatusTicker("Thing", tick, INTERVAL)) as ticker:
        ticker.follow("ns", "a")
        ticker.follow("ns", "a")  # following twice is following once
        await asyncio.sleep(INTERVAL / 2)
        assert ticks == []  # the first tick waits an interval: whoever saw the change just read it
        await asyncio.sleep(6 * INTERVAL)
        counted = len(ticks)
        assert 3 <= counted <= 7 and set(ticks) == {("ns", "a")}
        ticker.drop("ns", "a")
        await asyncio.sleep(3 * INTERVAL)
        assert len(ticks) == counted
        assert ticker.following() == []


async def test_nothing_ticks_while_a_peer_leads() -> None:
    ticks: list[str] = []
    leading_peer = True

    async def tick(namespace: str, name: str) -> None:
        ticks.append(name)

    async def paused() -> bool:
        return leading_peer

    async with running(StatusTicker("Thing", tick, INTERVAL), paused) as ticker:
        ticker.follow("ns", "a")
        await asyncio.sleep(4 * INTERVAL)
        assert ticks == []
        leading_peer = False
        await asyncio.sleep(4 * INTERVAL)
        assert ticks and set(ticks) == {"a"}


async def test_at_most_the_concurrency_of_ticks_run_at_once() -> None:
    busy = most_busy = 0
    done: set[str] = set()

    async def tick(namespace: str, name: str) -> None:
        nonlocal busy, most_busy
        busy += 1
        most_busy = max(most_busy, busy)
        await asyncio.sleep(INTERVAL)
        busy -= 1
        done.add(name)

    async with running(StatusTicker("Thing", tick, INTERVAL, concurrency=3)) as ticker:
        for index in range(12):
            ticker.follow("ns", f"r{index}")
        for _ in range(100):
            if len(done) == 12:
                break
            await asyncio.sleep(INTERVAL / 2)
    assert len(done) == 12 and most_busy == 3


async def test_a_failing_tick_is_logged_and_ticks_again(caplog: pytest.LogCaptureFixture) -> None:
    attempts: list[str] = []

    async def tick(namespace: str, name: str) -> None:
        attempts.append(name)
        raise RuntimeError("API server unreachable")

    with caplog.at_level(logging.WARNING, logger="sdxl_operator.handlers.status_ticker"):
        async with running(StatusTicker("Thing", tick, INTERVAL)) as ticker:
            ticker.follow("ns", "a")
            await asyncio.sleep(5 * INTERVAL)
    assert len(attempts) >= 2
    assert "status refresh of Thing ns/a skipped: API server unreachable" in caplog.text


async def test_the_interval_must_be_positive() -> None:
    async def tick(namespace: str, name: str) -> None:
        return None

    with pytest.raises(ValueError, match="must be positive, got 0"):
        StatusTicker("Thing", tick, 0)
