"""Kopf's child watches and the resync ask for metadata only; everything else Kopf asks goes out as
before. Over real HTTP against a recording server (``server``, in conftest), and against the
emulator, which answers metadata-only requests as the API server does."""

from __future__ import annotations

from typing import Any

import aiohttp
import kopf
import pytest

from sdxl_operator.handlers.child_resync import list_pages
from sdxl_operator.handlers.child_watch import CHILD_RESOURCES
from sdxl_operator.handlers.kube_api import KubeApi
from sdxl_operator.handlers.metadata_only_watches import (
    METADATA_LIST,
    METADATA_OBJECT,
    collection_paths,
    kopf_session,
)
from sdxl_sandbox.kube_emulator import serve_emulator

pytestmark = pytest.mark.asyncio


@pytest.mark.parametrize(("path", "matched"), [
    ("/api/v1/pods", True),
    ("/api/v1/namespaces/team-a/pods", True),
    ("/apis/batch/v1/jobs", True),
    ("/apis/batch/v1/namespaces/team-a/jobs", True),
    ("/apis/networking.k8s.io/v1/namespaces/team-a/networkpolicies", True),
    ("/api/v1/namespaces/team-a/pods/p", False),  # one object: a handler's read, in full
    ("/api/v1/namespaces/team-a/pods/p/log", False),
    ("/apis/sdxl.io/v1alpha1/namespaces/team-a/sdxldeployments", False),  # our resources: Kopf needs them whole
    ("/api/v1/namespaces", False),
    ("/apis/networkingxk8s.io/v1/networkpolicies", False),  # the group's dot is a dot
])
async def test_only_the_child_collections_are_matched(path: str, matched: bool) -> None:
    assert bool(collection_paths(CHILD_RESOURCES).match(path)) is matched


async def test_kopfs_session_asks_for_metadata_on_child_lists_and_watches_only(server: Any) -> None:
    server.answers = {"/api/v1/namespaces/team-a/pods": (200, {"kind": "PartialObjectMetadataList", "items": None})}
    context = kopf_session(kopf.ConnectionInfo(server=server.url, token="t0ken"), metadata_only=CHILD_RESOURCES)
    session = context.aiohttp_session
    try:
        async with session.get(f"{server.url}/api/v1/namespaces/team-a/pods?labelSelector=a%3Db") as response:
            listed = await response.json()
        async with session.get(f"{server.url}/api/v1/namespaces/team-a/pods?watch=true&resourceVersion=5"):
            pass
        async with session.get(f"{server.url}/apis/sdxl.io/v1alpha1/namespaces/team-a/sdxldeployments"):
            pass
    finally:
        await session.close()
    listing, watch, ours = server.seen
    assert listing["accept"] == METADATA_LIST and watch["accept"] == METADATA_OBJECT
    assert ours["accept"] != METADATA_LIST and "PartialObjectMetadata" not in (ours["accept"] or "")
    assert {request["authorization"] for request in server.seen} == {"Bearer t0ken"}
    assert all(request["user_agent"].startswith("kopf/") for request in server.seen)
    # The API server writes an empty metadata list with items null; Kopf iterates over them.
    assert listed["items"] == []
    assert context.server == server.url


async def test_the_emulator_answers_metadata_only_as_the_api_server_does() -> None:
    async with serve_emulator() as (_emulator, url), aiohttp.ClientSession() as session:
        pods = f"{url}/api/v1/namespaces/ns/pods"
        async with session.get(pods, headers={"Accept": METADATA_LIST}) as response:
            assert (await response.json())["items"] is None  # empty
        created = {"metadata": {"name": "p", "labels": {"a": "b"}}, "spec": {"containers": [{"name": "c"}]}}
        async with session.post(pods, json=created):
            pass
        async with session.get(pods, headers={"Accept": METADATA_LIST}) as response:
            listed = await response.json()
        async with session.get(f"{pods}?watch=true", headers={"Accept": METADATA_OBJECT},
                               timeout=aiohttp.ClientTimeout(sock_read=5)) as response:
            event = await response.content.readline()
    assert listed["kind"] == "PartialObjectMetadataList"
    [item] = listed["items"]
    assert item["kind"] == "PartialObjectMetadata" and "spec" not in item
    assert item["metadata"]["name"] == "p" and item["metadata"]["labels"] == {"a": "b"}
    assert b'"PartialObjectMetadata"' in event and b'"spec"' not in event


async def test_the_resync_lists_metadata_only(server: Any) -> None:
    server.answers = {"/apis/batch/v1/jobs": (200, {"kind": "PartialObjectMetadataList", "metadata": {},
                                                    "items": [{"metadata": {"name": "j", "uid": "u"}}]})}
    api = KubeApi.for_server(server.url)
    try:
        pages = [page async for page in list_pages(api.list_page, "Job", None)]
    finally:
        await api.close()
    assert pages == [[{"metadata": {"name": "j", "uid": "u"}}]]
    assert server.seen[0]["accept"] == METADATA_LIST
