"""The handlers' API client over real HTTP: the REST path, query and body of each call, its metric
labels, how answers map to results and errors, and new credentials after a login. The server here is
a small aiohttp app that records each request and answers as told (``server``, in conftest)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import kopf
import pytest

from sdxl_operator.handlers.kube_api import MERGE_PATCH, KubeApi, KubeApiError
from sdxl_operator.handlers.operator_metrics import OperatorMetrics

pytestmark = pytest.mark.asyncio


CONFIG_MAP = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "ns"}, "data": {"a": "b"}}
Call = Callable[[KubeApi], Awaitable[Any]]


@pytest.mark.parametrize(
    ("call", "method", "path", "query", "labels"),
    [
        (lambda api: api.create(CONFIG_MAP), "POST", "/api/v1/namespaces/ns/configmaps", {}, ("create", "ConfigMap")),
        (lambda api: api.read("Job", "ns", "j"), "GET", "/apis/batch/v1/namespaces/ns/jobs/j", {}, ("get", "Job")),
        (lambda api: api.delete("NetworkPolicy", "ns", "n"), "DELETE",
         "/apis/networking.k8s.io/v1/namespaces/ns/networkpolicies/n", {}, ("delete", "NetworkPolicy")),
        (lambda api: api.read("ScaledObject", "ns", "s"), "GET", "/apis/keda.sh/v1alpha1/namespaces/ns/scaledobjects/s",
         {}, ("get", "ScaledObject")),
        (lambda api: api.list_pods("ns", "app=x"), "GET", "/api/v1/namespaces/ns/pods", {"labelSelector": "app=x"},
         ("list", "Pod")),
        (lambda api: api.list_jobs("ns", "k=v"), "GET", "/apis/batch/v1/namespaces/ns/jobs", {"labelSelector": "k=v"},
         ("list", "Job")),
        (lambda api: api.list_page("HorizontalPodAutoscaler", None, "o=1", 500, "tok"), "GET",
         "/apis/autoscaling/v2/horizontalpodautoscalers", {"labelSelector": "o=1", "limit": "500", "continue": "tok"},
         ("list", "HorizontalPodAutoscaler")),
        (lambda api: api.list_events("ns", "involvedObject.name=j"), "GET", "/api/v1/namespaces/ns/events",
         {"fieldSelector": "involvedObject.name=j"}, ("list", "Event")),
        (lambda api: api.read_custom("sdxl.io", "v1alpha1", "sdxlfinetunes", "ns", "f"), "GET",
         "/apis/sdxl.io/v1alpha1/namespaces/ns/sdxlfinetunes/f", {}, ("get", "SDXLFineTune")),
        (lambda api: api.list_custom("sdxl.io", "v1alpha1", "sdxldeployments", "ns"), "GET",
         "/apis/sdxl.io/v1alpha1/namespaces/ns/sdxldeployments", {}, ("list", "SDXLDeployment")),
        (lambda api: api.read_cluster_custom("kopf.dev", "v1", "clusterkopfpeerings", "p"), "GET",
         "/apis/kopf.dev/v1/clusterkopfpeerings/p", {}, ("get", "clusterkopfpeerings")),
        (lambda api: api.read_pod_log_tail("ns", "p", "trainer", 20), "GET", "/api/v1/namespaces/ns/pods/p/log",
         {"container": "trainer", "tailLines": "20"}, ("get", "Pod/log")),
    ],
)
async def test_each_call_sends_its_rest_request_and_is_timed_by_verb_and_kind(
        server: Any, call: Call, method: str, path: str, query: dict[str, str], labels: tuple[str, str]) -> None:
    metrics = OperatorMetrics()
    api = KubeApi.for_server(server.url, metrics=metrics)
    try:
        await call(api)
    finally:
        await api.close()
    [request] = server.seen
    assert (request["method"], request["path"], request["query"]) == (method, path, query)
    assert request["user_agent"] == "sdxl-operator/handlers"
    verb, kind = labels
    assert metrics.registry.get_sample_value("sdxl_operator_api_request_duration_seconds_count",
                                             {"verb": verb, "kind": kind}) == 1


async def test_a_create_sends_the_manifest_and_patches_are_merge_patches(server: Any) -> None:
    api = KubeApi.for_server(server.url)
    try:
        assert await api.create(CONFIG_MAP) is True
        await api.patch("Deployment", "ns", "d", {"spec": {"replicas": 2, "template": None}})
        await api.patch_custom_status("sdxl.io", "v1alpha1", "sdxldeployments", "ns", "d", {"status": {"phase": "Ready"}})
    finally:
        await api.close()
    create, patch, status = server.seen
    assert create["body"] == CONFIG_MAP and create["content_type"] == "application/json"
    assert (patch["path"], patch["content_type"]) == ("/apis/apps/v1/namespaces/ns/deployments/d", MERGE_PATCH)
    assert patch["body"] == {"spec": {"replicas": 2, "template": None}}  # None removes the key
    assert (status["path"], status["content_type"]) == ("/apis/sdxl.io/v1alpha1/namespaces/ns/sdxldeployments/d/status",
                                                        MERGE_PATCH)


async def test_answers_map_to_results_and_errors_quote_the_server(server: Any) -> None:
    server.answers = {
        "/api/v1/namespaces/ns/configmaps": (409, {"kind": "Status", "message": "already exists"}),
        "/apis/batch/v1/namespaces/ns/jobs/gone": (404, {"kind": "Status", "message": "not found"}),
        "/apis/batch/v1/namespaces/ns/jobs": (422, {"kind": "Status", "message": 'Job.batch "x" is invalid: spec.x'}),
        "/apis/apps/v1/namespaces/ns/deployments/d": (500, "etcd timed out"),
        "/api/v1/namespaces/ns/pods/p/log": (400, {"kind": "Status", "message": "container is waiting to start"}),
        "/apis/policy/v1/namespaces/ns/poddisruptionbudgets/b": (404, {"kind": "Status", "message": "not found"}),
    }
    metrics = OperatorMetrics()
    api = KubeApi.for_server(server.url, metrics=metrics)
    try:
        assert await api.create(CONFIG_MAP) is False
        assert await api.read("Job", "ns", "gone") is None
        assert await api.delete("PodDisruptionBudget", "ns", "b") is False
        assert await api.read_pod_log_tail("ns", "p", "trainer", 5) is None
        with pytest.raises(KubeApiError, match=r'creating Job ns/x: 422 Unprocessable Entity: Job.batch "x" is invalid') \
                as refused:
            await api.create({"kind": "Job", "metadata": {"name": "x", "namespace": "ns"}})
        assert refused.value.status == 422
        with pytest.raises(KubeApiError, match="patching Deployment ns/d: 500 Internal Server Error: etcd timed out") \
                as failed:
            await api.patch("Deployment", "ns", "d", {})
        assert failed.value.status == 500
        with pytest.raises(ValueError, match="no API calls for kind 'Secret'"):
            await api.read("Secret", "ns", "s")
    finally:
        await api.close()
    assert metrics.registry.get_sample_value("sdxl_operator_api_request_errors_total",
                                             {"verb": "create", "kind": "Job", "code": "422"}) == 1


async def test_credentials_of_a_new_login_are_used_from_the_next_request(server: Any) -> None:
    api = KubeApi(kopf.ConnectionInfo(server=server.url, token="first"))
    try:
        await api.read("Job", "ns", "j")
        api.use(kopf.ConnectionInfo(server=server.url, token="second"))
        await api.read("Job", "ns", "j")
    finally:
        await api.close()
    assert [request["authorization"] for request in server.seen] == ["Bearer first", "Bearer second"]


async def test_the_sandbox_server_gets_no_credentials(server: Any) -> None:
    api = KubeApi.for_server(server.url)
    try:
        await api.read("Job", "ns", "j")
    finally:
        await api.close()
    assert server.seen[0]["authorization"] is None
