"""The emulator extensions the operator relies on, each checked over real HTTP."""

from __future__ import annotations

from typing import Any

import pytest

from sdxl_sandbox.kube_emulator import serve_emulator
from sdxl_sandbox.label_selectors import matches_selector, parse_selector

JOBS = "/apis/batch/v1/namespaces/ns/jobs"
PODS = "/api/v1/namespaces/ns/pods"
FTS = "/apis/sdxl.io/v1alpha1/namespaces/ns/sdxlfinetunes"


async def _json(response: Any) -> Any:
    async with response:
        return await response.json()


@pytest.mark.asyncio
async def test_create_assigns_server_metadata_and_patch_bumps_versions() -> None:
    async with serve_emulator() as (emulator, _url):
        created = await _json(await emulator.post(FTS, json={"metadata": {"name": "a"}, "spec": {"x": 1}}))
        meta = created["metadata"]
        assert meta["namespace"] == "ns" and meta["generation"] == 1 and len(meta["uid"]) == 36
        assert meta["creationTimestamp"].endswith("Z")
        first_version = meta["resourceVersion"]

        status_patched = await _json(await emulator.patch(f"{FTS}/a/status", json={"status": {"phase": "Pending"}}))
        assert status_patched["metadata"]["generation"] == 1
        assert status_patched["metadata"]["resourceVersion"] != first_version

        spec_patched = await _json(await emulator.patch(f"{FTS}/a", json={"spec": {"x": 2}}))
        assert spec_patched["metadata"]["generation"] == 2


@pytest.mark.asyncio
async def test_failed_json_patch_test_answers_422() -> None:
    async with serve_emulator() as (emulator, _url):
        await _json(await emulator.post(FTS, json={"metadata": {"name": "a"}}))
        ops = [{"op": "test", "path": "/metadata/resourceVersion", "value": "stale"},
               {"op": "add", "path": "/metadata/finalizers", "value": ["x"]}]
        response = await emulator.patch(f"{FTS}/a", json=ops, headers={"Content-Type": "application/json-patch+json"})
        async with response:
            assert response.status == 422


@pytest.mark.asyncio
async def test_list_honours_label_selector_and_names_the_list_kind() -> None:
    async with serve_emulator() as (emulator, _url):
        for name, job in (("p1", "j1"), ("p2", "j2")):
            await _json(await emulator.post(PODS, json={"metadata": {"name": name, "labels": {"job-name": job}}}))
        listed = await _json(await emulator.get(f"{PODS}?labelSelector=job-name%3Dj2"))
        assert [item["metadata"]["name"] for item in listed["items"]] == ["p2"]
        assert listed["kind"] == "PodList" and listed["apiVersion"] == "v1"


@pytest.mark.asyncio
async def test_deleting_an_owner_collects_its_dependents_recursively() -> None:
    async with serve_emulator() as (emulator, _url):
        owner = await _json(await emulator.post(FTS, json={"metadata": {"name": "ft"}}))
        ref = {"apiVersion": "sdxl.io/v1alpha1", "kind": "SDXLFineTune", "name": "ft", "uid": owner["metadata"]["uid"]}
        job = await _json(await emulator.post(JOBS, json={"metadata": {"name": "ft-train", "ownerReferences": [ref]}}))
        job_ref = {"apiVersion": "batch/v1", "kind": "Job", "name": "ft-train", "uid": job["metadata"]["uid"]}
        await _json(await emulator.post(PODS, json={"metadata": {"name": "ft-train-x", "ownerReferences": [job_ref]}}))
        await _json(await emulator.post(PODS, json={"metadata": {"name": "unrelated"}}))

        async with await emulator.delete(f"{FTS}/ft") as response:
            assert response.status == 200
        assert emulator.live_object("batch/v1/jobs", "ns", "ft-train") is None
        assert [p["metadata"]["name"] for p in emulator.live_objects("v1/pods", "ns")] == ["unrelated"]


@pytest.mark.asyncio
async def test_owner_with_finalizer_collects_dependents_only_once_released() -> None:
    async with serve_emulator() as (emulator, _url):
        owner = await _json(await emulator.post(FTS, json={"metadata": {"name": "ft", "finalizers": ["f"]}}))
        ref = {"apiVersion": "sdxl.io/v1alpha1", "kind": "SDXLFineTune", "name": "ft", "uid": owner["metadata"]["uid"]}
        await _json(await emulator.post(JOBS, json={"metadata": {"name": "ft-train", "ownerReferences": [ref]}}))
        async with await emulator.delete(f"{FTS}/ft"):
            pass
        assert emulator.live_object("batch/v1/jobs", "ns", "ft-train") is not None
        await _json(await emulator.patch(f"{FTS}/ft", json={"metadata": {"finalizers": None}}))
        assert emulator.live_object("sdxl.io/v1alpha1/sdxlfinetunes", "ns", "ft") is None
        assert emulator.live_object("batch/v1/jobs", "ns", "ft-train") is None


@pytest.mark.asyncio
async def test_pod_log_is_served_with_tail_lines(tmp_path: Any) -> None:
    from sdxl_operator.handlers.kube_api import KubeApi

    async with serve_emulator() as (emulator, url):
        await _json(await emulator.post(PODS, json={"metadata": {"name": "p"}}))
        emulator.set_pod_log("ns", "p", "one\n")
        emulator.append_pod_log("ns", "p", '{"event": "progress", "step": 2}\nthree\n')
        api = KubeApi.for_server(url)
        try:
            assert await api.read_pod_log_tail("ns", "p", "trainer", 2) == '{"event": "progress", "step": 2}\nthree\n'
            assert await api.read_pod_log_tail("ns", "missing", "trainer", 2) is None  # 404
        finally:
            await api.close()


@pytest.mark.parametrize(
    ("selector", "labels", "expected"),
    [
        ("a=b", {"a": "b"}, True),
        ("a==b", {"a": "c"}, False),
        ("a!=b", {}, True),
        ("a!=b", {"a": "b"}, False),
        ("a", {"a": ""}, True),
        ("!a", {"a": "x"}, False),
        ("a in (x, y),b", {"a": "y", "b": "1"}, True),
        ("a notin (x,y)", {"a": "x"}, False),
        ("", {"anything": "x"}, True),
    ],
)
def test_label_selector_table(selector: str, labels: dict[str, str], expected: bool) -> None:
    assert matches_selector(labels, parse_selector(selector)) is expected


@pytest.mark.asyncio
async def test_kube_api_maps_answers_and_unreachable_servers() -> None:
    from sdxl_operator.handlers.kube_api import KubeApi, KubeApiError

    async with serve_emulator() as (_emulator, url):
        api = KubeApi.for_server(url)
        try:
            manifest = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "ns"},
                        "data": {"a": "b"}}
            assert await api.create(manifest) is True
            assert await api.create(manifest) is False  # 409: already there
            assert await api.read("Job", "ns", "missing") is None
            assert await api.list_pods("ns", "a=b") == []
            assert await api.read_pod_log_tail("ns", "missing", "trainer", 5) is None
            with pytest.raises(ValueError, match="no API calls for kind 'Secret'"):
                await api.create({**manifest, "kind": "Secret"})
        finally:
            await api.close()
    unreachable = KubeApi.for_server(url)  # the server is gone now
    try:
        with pytest.raises(KubeApiError, match="cannot reach the Kubernetes API server") as error:
            await unreachable.read("Job", "ns", "j")
        assert error.value.status is None
    finally:
        await unreachable.close()
