"""Status refreshes on request: coalesced while waiting, one at a time per resource, never lost."""

from __future__ import annotations

import asyncio
import time

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
    async with refresher.lock("ns", "a"):  # a status tick writing the same status
        refresher.request("ns", "a")
        await asyncio.sleep(0.05)
        assert recorder.calls == []
    await refresher.idle()
    assert recorder.calls == [("ns", "a")]
    assert refresher.refreshed_within("ns", "a", 5.0)
    assert not refresher.refreshed_within("ns", "b", 5.0)


class Flaky:
    """A refresh that fails its first ``failures`` runs, as one does while the API server is away."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls: list[tuple[str, float]] = []

    async def __call__(self, namespace: str, name: str) -> None:
        self.calls.append((name, time.monotonic()))
        if len(self.calls) <= self.failures:
            raise RuntimeError("API server away")


async def test_a_failing_refresh_is_retried_with_a_growing_delay_until_it_succeeds(
        caplog: pytest.LogCaptureFixture) -> None:
    refresh = Flaky(failures=2)
    refresher = StatusRefresher("thing", refresh, coalesce_seconds=0.0, first_retry_seconds=0.05)
    refresher.request("ns", "a")
    await refresher.idle()
    assert [name for name, _ in refresh.calls] == ["a", "a", "a"]
    (_, first), (_, second), (_, third) = refresh.calls
    assert second - first >= 0.05 and third - second >= 0.1  # 1x, then 2x the first delay
    assert refresher.refreshed_within("ns", "a", 5.0)
    assert "API server away" in caplog.text and "retry 1 of 4" in caplog.text and "retry 2 of 4" in caplog.text


async def test_retries_stop_after_a_few_and_the_next_request_runs(caplog: pytest.LogCaptureFixture) -> None:
    refresh = Flaky(failures=10)
    refresher = StatusRefresher("thing", refresh, coalesce_seconds=0.0, retries=2, first_retry_seconds=0.01,
                                max_retry_seconds=0.01)
    refresher.request("ns", "a")
    await refresher.idle()
    assert len(refresh.calls) == 3  # the run and two retries
    assert "failed 3 times" in caplog.text
    refresher.request("ns", "a")
    await refresher.idle()
    assert len(refresh.calls) == 6


async def test_the_retry_delay_is_capped() -> None:
    refresh = Flaky(failures=3)
    refresher = StatusRefresher("thing", refresh, coalesce_seconds=0.0, first_retry_seconds=0.05,
                                max_retry_seconds=0.06)
    refresher.request("ns", "a")
    await refresher.idle()
    gaps = [later - earlier for (_, earlier), (_, later) in zip(refresh.calls, refresh.calls[1:], strict=False)]
    assert len(refresh.calls) == 4 and gaps[-1] < 0.2  # 0.06, not 0.2


async def test_a_resource_deleted_while_its_retry_waits_is_not_retried() -> None:
    refresh = Flaky(failures=1)
    refresher = StatusRefresher("thing", refresh, coalesce_seconds=0.0, first_retry_seconds=0.2)
    refresher.request("ns", "a")
    await asyncio.sleep(0.05)  # failed; its retry waits
    refresher.forget("ns", "a")
    await refresher.idle()
    assert len(refresh.calls) == 1
    assert not refresher.refreshed_within("ns", "a", 5.0)


async def test_a_resource_deleted_while_its_refresh_runs_is_not_retried() -> None:
    started = asyncio.Event()

    async def refresh(namespace: str, name: str) -> None:
        calls.append(name)
        started.set()
        await asyncio.sleep(0.05)
        raise RuntimeError("API server away")

    calls: list[str] = []
    refresher = StatusRefresher("thing", refresh, coalesce_seconds=0.0, first_retry_seconds=0.01)
    refresher.request("ns", "a")
    await started.wait()
    refresher.forget("ns", "a")
    await refresher.idle()
    assert calls == ["a"]
    assert refresher._locks == {}  # what was kept went when the refresh ended


async def test_a_change_during_the_retry_delay_joins_the_retry() -> None:
    refresh = Flaky(failures=1)
    refresher = StatusRefresher("thing", refresh, coalesce_seconds=0.0, first_retry_seconds=0.1)
    refresher.request("ns", "a")
    await asyncio.sleep(0.05)
    for _ in range(3):
        refresher.request("ns", "a")
    await refresher.idle()
    assert len(refresh.calls) == 2


async def test_close_cancels_what_waits() -> None:
    recorder = Recorder()
    refresher = StatusRefresher("thing", recorder, coalesce_seconds=10.0)
    refresher.request("ns", "a")
    await refresher.close()
    assert recorder.calls == []


async def test_a_deleted_resource_is_forgotten_at_once_or_when_the_refresh_of_it_under_way_ends() -> None:
    recorder = Recorder(hold=0.1)
    refresher = StatusRefresher("thing", recorder, coalesce_seconds=0.0)
    refresher.request("ns", "a")
    await asyncio.sleep(0.05)
    lock = refresher.lock("ns", "a")
    refresher.forget("ns", "a")  # running: its lock stays while it runs
    assert refresher.lock("ns", "a") is lock
    await refresher.idle()
    assert refresher._locks == {} and not refresher.refreshed_within("ns", "a", 5.0)
    refresher.request("ns", "b")
    await refresher.idle()
    refresher.forget("ns", "b")  # idle: at once
    assert refresher._locks == {} and not refresher.refreshed_within("ns", "b", 5.0)
