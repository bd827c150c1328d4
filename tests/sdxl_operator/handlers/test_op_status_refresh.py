"""Status refreshes on request: coalesced while waiting, one at a time per resource, never lost."""

from __future__ import annotations

import asyncio

import pytest

from sdxl_operator.handlers.status_refresh import StatusRefresher

pytestmark = pytest.mark.asyncio


class Recorder:
    def __init__(self, hold: float = 0.0) -> None:
        self.calls: list[tuple[str, str]] = []
        self.running = 0
        self.most_at_once = 0
        self.hold = hold

    async def __call__(self, namespace: str, name: str) -> None:
        self.running += 1
        self.most_at_once = max(self.most_at_once, self.running)
        self.calls.append((namespace, name))
        await asyncio.sleep(self.hold)
        self.running -= 1


async def test_a_burst_of_requests_makes_one_refresh() -> None:
    recorder = Recorder()
    refresher = StatusRefresher("thing", recorder, coalesce_seconds=0.05)
    for _ in range(10):
        refresher.request("ns", "a")
    refresher.request("ns", "b")
    await refresher.idle()
    assert sorted(recorder.calls) == [("ns", "a"), ("ns", "b")]


async def test_a_request_during_a_refresh_runs_once_more_after_it_never_alongside() -> None:
    recorder = Recorder(hold=0.1)
    refresher = StatusRefresher("thing", recorder, coalesce_seconds=0.0)
    refresher.request("ns", "a")
    await asyncio.sleep(0.05)  # the first refresh runs now
    for _ in range(5):
        refresher.request("ns", "a")
    await refresher.idle()
    assert recorder.calls == [("ns", "a"), ("ns", "a")]
    assert recorder.most_at_once == 1


async def test_a_holder_of_the_lock_delays_the_refresh() -> None:
    recorder = Recorder()
    refresher = StatusRefresher("thing", recorder, coalesce_seconds=0.0)
    async with refresher.lock("ns", "a"):  # a status timer writing the same status
        refresher.request("ns", "a")
        await asyncio.sleep(0.05)
        assert recorder.calls == []
    await refresher.idle()
    assert recorder.calls == [("ns", "a")]
    assert refresher.refreshed_within("ns", "a", 5.0)
    assert not refresher.refreshed_within("ns", "b", 5.0)


async def test_a_failing_refresh_is_logged_and_the_next_request_runs(caplog: pytest.LogCaptureFixture) -> None:
    calls: list[str] = []

    async def refresh(namespace: str, name: str) -> None:
        calls.append(name)
        if len(calls) == 1:
            raise RuntimeError("API server away")

    refresher = StatusRefresher("thing", refresh, coalesce_seconds=0.0)
    refresher.request("ns", "a")
    await refresher.idle()
    refresher.request("ns", "a")
    await refresher.idle()
    assert calls == ["a", "a"]
    assert "API server away" in caplog.text


async def test_close_cancels_what_waits() -> None:
    recorder = Recorder()
    refresher = StatusRefresher("thing", recorder, coalesce_seconds=10.0)
    refresher.request("ns", "a")
    await refresher.close()
    assert recorder.calls == []


async def test_a_deleted_resource_is_forgotten_unless_a_refresh_of_it_is_under_way() -> None:
    recorder = Recorder(hold=0.1)
    refresher = StatusRefresher("thing", recorder, coalesce_seconds=0.0)
    refresher.request("ns", "a")
    await asyncio.sleep(0.05)
    refresher.forget("ns", "a")  # running: kept
    await refresher.idle()
    assert refresher.refreshed_within("ns", "a", 5.0)
    refresher.forget("ns", "a")
    assert not refresher.refreshed_within("ns", "a", 5.0)
