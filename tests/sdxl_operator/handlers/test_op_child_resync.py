"""The safety-net resync: a listing's unseen change or a remembered child missing from it refreshes the
child's owner, an unchanged listing refreshes nothing; run against the emulator it makes only LISTs."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import kopf
import pytest

from sdxl_operator.core.labels import (
    COMPILER,
    DEPLOYMENT_KEY,
    FINETUNE_KEY,
    MANAGED_BY,
    MANAGED_BY_KEY,
    NAME_KEY,
)
from sdxl_operator.core.settings import OperatorSettings
from sdxl_operator.handlers.child_resync import ChildResync
from sdxl_operator.handlers.child_watch import CHILD_RESOURCES, ChildChanges
from sdxl_operator.handlers.kube_api import USER_AGENT
from sdxl_operator.handlers.operator_registry import build_registry
from sdxl_operator.handlers.status_refresh import StatusRefresher

pytestmark = pytest.mark.asyncio
RESYNC_LOGGER = "sdxl_operator.handlers.child_resync"


class Refreshes:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    async def __call__(self, namespace: str, name: str) -> None:
        self.calls.append((namespace, name))


class FakeListing:
    """What the API server would list, by kind; the resync's only view of the cluster here."""

    def __init__(self) -> None:
        self.objects: dict[str, list[dict[str, Any]]] = {}
        self.requests: list[tuple[str, str | None]] = []

    async def __call__(self, kind: str, namespace: str | None) -> AsyncIterator[list[dict[str, Any]]]:
        self.requests.append((kind, namespace))
        items = [dict(item) for item in self.objects.get(kind, [])]  # list items carry no kind
        for start in range(0, len(items), 2):  # pages of two
            yield items[start:start + 2]


def child(uid: str, version: str, labels: dict[str, str], name: str = "x") -> dict[str, Any]:
    return {"metadata": {"uid": uid, "name": name, "namespace": "ns", "resourceVersion": version,
                         "labels": {MANAGED_BY_KEY: MANAGED_BY, **labels}}}


def setup() -> tuple[ChildChanges, Refreshes, Refreshes, FakeListing, ChildResync]:
    finetunes, deployments = Refreshes(), Refreshes()
    changes = ChildChanges(finetunes=StatusRefresher("SDXLFineTune", finetunes, coalesce_seconds=0.0),
                           deployments=StatusRefresher("SDXLDeployment", deployments, coalesce_seconds=0.0))
    listing = FakeListing()
    return changes, finetunes, deployments, listing, ChildResync(changes, listing)


# The owner indexes as Kopf keeps them (child_watch's index functions): key → names.
FINETUNE_OWNERS: Any = {("ns", "ft"): [("ft", False)], ("ns", "done"): [("done", True)]}
DEPLOYMENT_OWNERS: Any = {("ns", "label", "dep"): ["dep"], ("ns", "compileJob", "dep-compile-1"): ["dep", "other"]}


async def resync(changes: ChildChanges, resync: ChildResync) -> list[str]:
    found = await resync.run_once(FINETUNE_OWNERS, DEPLOYMENT_OWNERS)
    await changes.finetunes.idle()
    await changes.deployments.idle()
    return found


async def test_an_unseen_version_refreshes_the_right_owner() -> None:
    changes, finetunes, deployments, listing, resync_ = setup()
    changes.seen.changed({"kind": "Deployment", **child("d1", "5", {DEPLOYMENT_KEY: "dep"})}, "MODIFIED")
    changes.seen.changed({"kind": "Pod", **child("p1", "7", {FINETUNE_KEY: "ft"})}, "MODIFIED")
    listing.objects = {"Deployment": [child("d1", "6", {DEPLOYMENT_KEY: "dep"})],  # a newer version
                       "Pod": [child("p1", "7", {FINETUNE_KEY: "ft"})]}  # as seen
    found = await resync(changes, resync_)
    assert deployments.calls == [("ns", "dep")] and finetunes.calls == []
    assert found == ["Deployment ns/x changed"]
    assert changes.seen.version("d1") == "6"


async def test_a_compile_job_change_refreshes_every_follower() -> None:
    changes, _, deployments, listing, resync_ = setup()
    job = child("j1", "1", {NAME_KEY: COMPILER}, name="dep-compile-1")
    changes.seen.changed({"kind": "Job", **job}, "MODIFIED")
    listing.objects = {"Job": [{**job, "metadata": {**job["metadata"], "resourceVersion": "2"}}]}
    await resync(changes, resync_)
    assert sorted(deployments.calls) == [("ns", "dep"), ("ns", "other")]


async def test_a_remembered_child_missing_from_the_listing_is_taken_as_deleted() -> None:
    changes, finetunes, deployments, _, resync_ = setup()
    changes.seen.changed({"kind": "Pod", **child("p1", "7", {FINETUNE_KEY: "ft"}, name="ft-train-a")}, "MODIFIED")
    changes.seen.changed({"kind": "Pod", **child("p2", "3", {FINETUNE_KEY: "done"})}, "MODIFIED")
    found = await resync(changes, resync_)
    assert finetunes.calls == [("ns", "ft")]  # the finished fine-tune's status never changes
    assert deployments.calls == []
    assert found == ["Pod ns/ft-train-a is gone", "Pod ns/x is gone"]
    assert changes.seen.version("p1") is None and len(changes.seen) == 0


async def test_an_unchanged_listing_refreshes_nothing(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger=RESYNC_LOGGER)
    changes, finetunes, deployments, listing, resync_ = setup()
    objects = {"Job": [child("j1", "4", {FINETUNE_KEY: "ft"})], "Service": [child("s1", "2", {DEPLOYMENT_KEY: "dep"})]}
    for kind, items in objects.items():
        for item in items:
            changes.seen.changed({"kind": kind, **item}, "MODIFIED")
    listing.objects = objects
    # A child the watches have not reported yet (created while the LIST ran) is remembered, not a change.
    listing.objects["Pod"] = [child("p9", "9", {FINETUNE_KEY: "ft"})]
    assert await resync(changes, resync_) == []
    assert await resync(changes, resync_) == []
    assert finetunes.calls == [] and deployments.calls == []
    assert "nothing changed unseen" in caplog.text and "missed" not in caplog.text
    # One LIST per child kind and pass, cluster-wide.
    assert len(listing.requests) == 2 * len(CHILD_RESOURCES) and {ns for _, ns in listing.requests} == {None}


async def test_a_listing_older_than_the_watch_does_not_undo_it() -> None:
    changes, _, deployments, listing, resync_ = setup()
    changes.seen.changed({"kind": "Deployment", **child("d1", "9", {DEPLOYMENT_KEY: "dep"})}, "MODIFIED")
    listing.objects = {"Deployment": [child("d1", "8", {DEPLOYMENT_KEY: "dep"})]}  # the watch saw 9 during the LIST
    assert await resync(changes, resync_) == []
    assert changes.seen.version("d1") == "9" and deployments.calls == []


async def test_a_listing_ahead_of_the_watch_is_no_lost_event() -> None:
    changes, _, deployments, listing, resync_ = setup()
    changes.seen.changed({"kind": "Deployment", **child("d1", "5", {DEPLOYMENT_KEY: "dep"})}, "MODIFIED")
    changes.seen.changed({"kind": "Service", **child("s1", "2", {DEPLOYMENT_KEY: "dep"})}, "MODIFIED")
    newer = child("d1", "6", {DEPLOYMENT_KEY: "dep"})
    listing.objects = {"Deployment": [newer]}  # the Service was deleted just before the LIST

    async def the_watch_catches_up() -> None:
        await asyncio.sleep(0.02)
        changes.seen.changed({"kind": "Deployment", **newer}, "MODIFIED")
        changes.seen.changed({"kind": "Service", **child("s1", "3", {DEPLOYMENT_KEY: "dep"})}, "DELETED")

    catching_up = asyncio.create_task(the_watch_catches_up())
    assert await resync_.run_once(FINETUNE_OWNERS, DEPLOYMENT_OWNERS, settle_seconds=0.2) == []
    await catching_up
    await changes.deployments.idle()
    assert deployments.calls == []


async def test_a_failed_listing_skips_its_kind_and_deletes_nothing(caplog: pytest.LogCaptureFixture) -> None:
    changes, finetunes, _, listing, _ = setup()
    changes.seen.changed({"kind": "Pod", **child("p1", "7", {FINETUNE_KEY: "ft"})}, "MODIFIED")

    async def failing(kind: str, namespace: str | None) -> AsyncIterator[list[dict[str, Any]]]:
        if kind == "Pod":
            raise RuntimeError("403 Forbidden")
        async for page in listing(kind, namespace):
            yield page

    assert await resync(changes, ChildResync(changes, failing)) == []
    assert finetunes.calls == [] and changes.seen.version("p1") == "7"
    assert "cannot list the operator's Pods" in caplog.text


async def test_each_watched_namespace_is_listed() -> None:
    changes, _, _, listing, _ = setup()
    await ChildResync(changes, listing, ["team-a", "team-b"]).run_once(FINETUNE_OWNERS, DEPLOYMENT_OWNERS)
    assert {ns for _, ns in listing.requests} == {"team-a", "team-b"}
    assert len(listing.requests) == 2 * len(CHILD_RESOURCES)


async def test_the_loop_outlives_a_failing_pass_and_skips_while_a_peer_leads(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger=RESYNC_LOGGER)
    changes, _, _, _, _ = setup()
    passes: list[bool] = []

    async def broken(kind: str, namespace: str | None) -> AsyncIterator[list[dict[str, Any]]]:
        passes.append(True)
        raise RuntimeError("boom")
        yield []  # an async generator, as the real listing is

    resync_ = ChildResync(changes, broken)
    resync_.run_once = _failing_pass(resync_.run_once)  # type: ignore[method-assign]
    standing_by = [True, False, False]

    async def led() -> bool:
        return standing_by.pop(0) if standing_by else False

    task = asyncio.create_task(resync_.run_forever(0.02, FINETUNE_OWNERS, DEPLOYMENT_OWNERS, led))
    await asyncio.sleep(0.3)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    assert "another operator replica is active; skipping this pass" in caplog.text
    assert "the pass failed" in caplog.text
    assert len(passes) >= 2 * len(CHILD_RESOURCES)  # it went on after the failures


def _failing_pass(run_once: Any) -> Any:
    async def run(*args: Any) -> list[str]:
        await run_once(*args)
        raise RuntimeError("a bug in the pass")
    return run


@contextlib.asynccontextmanager
async def operator_with_resync(cluster: Any, seconds: float) -> AsyncIterator[None]:
    """As conftest's ``running_operator`` (its settings too), with the resync every ``seconds``."""
    stop, ready = asyncio.Event(), asyncio.Event()
    settings = OperatorSettings(status_interval_seconds=0.2, pending_grace_seconds=1.0,
                                artifact_store="s3://sdxl-artifacts/store")
    task = asyncio.create_task(kopf.operator(
        registry=build_registry(settings, api_server=cluster.url, resync_seconds=seconds),
        settings=kopf.OperatorSettings(), clusterwide=True, standalone=True, stop_flag=stop, ready_flag=ready))
    await asyncio.wait_for(ready.wait(), 30)
    try:
        yield
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


def our_requests(cluster: Any) -> dict[tuple[str, str, str], int]:
    """The handlers' own requests (kube_api's user agent, not Kopf's), by verb, group, resource."""
    return {(verb, group, resource): count for (agent, verb, group, resource), count in cluster.emulator.audit.items()
            if agent == USER_AGENT}


@pytest.mark.slow
async def test_the_resync_runs_against_the_api_server_with_list_requests_only(
        cluster: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger=RESYNC_LOGGER)
    async with operator_with_resync(cluster, 0.3):
        # A fine-tune that ran and failed: children to list, and no status ticks left to make requests.
        await cluster.create_finetune("ft")
        await cluster.wait_for("the training Job", lambda: cluster.job("ft-train"))
        pod = await cluster.start_pod("ft-train")
        await cluster.run_pod(pod)
        await cluster.finish_pod(pod, exit_code=1, message="RuntimeError: boom")
        await cluster.finish_job("ft-train", "Failed", "BackoffLimitExceeded", "backoff limit reached")
        await cluster.wait_for_status("ft", lambda status: status.get("phase") == "Failed")
        await asyncio.sleep(0.5)  # the last handlers finish
        before, logged_before = our_requests(cluster), len(caplog.records)
        await asyncio.sleep(1.5)
        after = our_requests(cluster)
        window = [record.getMessage() for record in caplog.records[logged_before:]
                  if record.name == RESYNC_LOGGER]
    passes = sum("nothing changed unseen" in message for message in window)
    new = {key: count - before.get(key, 0) for key, count in after.items() if count != before.get(key, 0)}
    assert passes >= 2, window
    # Nothing but one LIST of each child kind per pass, no request per object (the window may cut a pass).
    child_lists = {("list", group, plural) for group, _, plural in CHILD_RESOURCES}
    assert set(new) == child_lists, new
    assert all(passes - 1 <= count <= passes + 1 for count in new.values()), (passes, new)
    # Nothing changes meanwhile: a pass that finds a "lost" event would mean the listings and the
    # watches disagree about the same objects (before the window, a pass may race a watch event).
    assert not [message for message in window if "missed" in message], window
