"""A fake cluster for the operator's integration tests.

The API server is the emulator (KMock, extended in ``sdxl_sandbox.kube_emulator``) over real
HTTP on 127.0.0.1; the real operator (Kopf with our registry) runs in the test's event loop and
reaches it through a kubeconfig, as it would reach a cluster. Nothing runs Jobs here, so the tests
play the Job controller and the kubelet themselves (:class:`FakeCluster`): they create the Job's
pods, set pod and Job status, termination messages and pod logs through the same HTTP API.
(``test_op_cli.py`` runs the console script, which finds the emulator through a kubeconfig.)
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import datetime
import functools
import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import kopf
import pytest
import pytest_asyncio

from sdxl_operator.core.settings import OperatorSettings
from sdxl_operator.handlers.kube_api import USER_AGENT
from sdxl_operator.handlers.operator_registry import build_registry
from sdxl_operator.manifests import permissions
from sdxl_sandbox.kube_emulator import KubeEmulator, serve_emulator

FINETUNES = "sdxl.io/v1alpha1/sdxlfinetunes"
OPERATOR_AGENTS = ("kopf/", USER_AGENT)  # Kopf's own client, and the handlers' (kube_api)
NAMESPACE = "team-a"
TINY_SPEC: dict[str, Any] = {
    "baseModel": "builtin:tiny",
    "instanceImages": "builtin:sample-subject",
    "instancePrompt": "a photo of sks person",
    "training": {"maxSteps": 10, "resolution": 64},
    "resources": {"gpus": 0, "cpu": "1", "memory": "1Gi"},
}


def rfc3339(moment: datetime.datetime | None = None) -> str:
    moment = moment or datetime.datetime.now(tz=datetime.timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


class FakeCluster:
    """The emulator plus the parts of Kubernetes the tests play: Job controller and kubelet."""

    def __init__(self, emulator: KubeEmulator, url: str) -> None:
        self.emulator = emulator
        self.url = url

    async def _call(self, method: str, path: str, body: Any = None, content_type: str | None = None) -> Any:
        headers = {"Content-Type": content_type} if content_type else None
        # A fresh connection per call, as kubectl would use: KMock's own client session can get stuck
        # on a pooled connection after an operator restart.
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as session:
            request = getattr(session, method)(self.url + path, json=body, headers=headers)
            async with request as response:
                payload = await response.json(content_type=None)
                assert response.status < 300, f"{method} {path}: {response.status} {payload}"
                return payload

    # ----- the user -----

    async def create_finetune(self, name: str, spec: dict[str, Any] | None = None) -> dict[str, Any]:
        body = {"apiVersion": "sdxl.io/v1alpha1", "kind": "SDXLFineTune",
                "metadata": {"name": name, "namespace": NAMESPACE}, "spec": copy.deepcopy(spec or TINY_SPEC)}
        return await self._call("post", f"/apis/sdxl.io/v1alpha1/namespaces/{NAMESPACE}/sdxlfinetunes", body)  # type: ignore[no-any-return]

    async def delete_finetune(self, name: str) -> None:
        await self._call("delete", f"/apis/sdxl.io/v1alpha1/namespaces/{NAMESPACE}/sdxlfinetunes/{name}")

    # ----- reading -----

    def finetune(self, name: str) -> dict[str, Any] | None:
        return self.emulator.live_object(FINETUNES, NAMESPACE, name)

    def status(self, name: str) -> dict[str, Any]:
        return dict((self.finetune(name) or {}).get("status") or {})

    def job(self, name: str) -> dict[str, Any] | None:
        return self.emulator.live_object("batch/v1/jobs", NAMESPACE, name)

    def configmap(self, name: str) -> dict[str, Any] | None:
        return self.emulator.live_object("v1/configmaps", NAMESPACE, name)

    def jobs(self) -> list[dict[str, Any]]:
        return self.emulator.live_objects("batch/v1/jobs", NAMESPACE)

    async def wait_for(self, what: str, check: Callable[[], Any], timeout: float = 15.0) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            value = check()
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}")
            await asyncio.sleep(0.05)

    async def wait_for_status(self, name: str, check: Callable[[dict[str, Any]], bool], timeout: float = 15.0
                              ) -> dict[str, Any]:
        def probe() -> dict[str, Any] | None:
            status = self.status(name)
            return status if status and check(status) else None

        try:
            return await self.wait_for(f"status of {name}", probe, timeout)  # type: ignore[no-any-return]
        except AssertionError:
            raise AssertionError(f"status of {name} never matched; last: {json.dumps(self.status(name))}") from None

    # ----- playing the Job controller and the kubelet -----

    async def start_pod(self, job_name: str, suffix: str = "a", status: dict[str, Any] | None = None) -> str:
        """Create the Job's pod as the Job controller would; returns its name."""
        job = self.job(job_name)
        assert job is not None, f"Job {job_name} does not exist"
        template = job["spec"]["template"]
        labels = dict(template["metadata"]["labels"])
        labels.update({"batch.kubernetes.io/job-name": job_name, "job-name": job_name})
        name = f"{job_name}-{suffix}"
        pod = {
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": NAMESPACE, "labels": labels,
                         "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": job_name,
                                              "uid": job["metadata"]["uid"], "controller": True}]},
            "spec": copy.deepcopy(template["spec"]),
            "status": status or {"phase": "Pending"},
        }
        await self._call("post", f"/api/v1/namespaces/{NAMESPACE}/pods", pod)
        return name

    async def set_pod_status(self, pod: str, status: dict[str, Any]) -> None:
        await self._call("patch", f"/api/v1/namespaces/{NAMESPACE}/pods/{pod}/status", {"status": status})

    async def set_job_status(self, job_name: str, status: dict[str, Any]) -> None:
        await self._call("patch", f"/apis/batch/v1/namespaces/{NAMESPACE}/jobs/{job_name}/status", {"status": status})

    def log(self, pod: str, text: str) -> None:
        self.emulator.append_pod_log(NAMESPACE, pod, text)

    async def run_pod(self, pod: str) -> None:
        await self.set_pod_status(pod, running_pod_status())

    async def finish_pod(self, pod: str, *, exit_code: int, message: str, reason: str | None = None) -> None:
        terminated: dict[str, Any] = {"exitCode": exit_code, "message": message,
                                      "reason": reason or ("Completed" if exit_code == 0 else "Error")}
        await self.set_pod_status(pod, {
            "phase": "Succeeded" if exit_code == 0 else "Failed",
            "containerStatuses": [{"name": "trainer", "ready": False, "state": {"terminated": terminated}}],
        })

    async def finish_job(self, job_name: str, condition: str, reason: str = "", message: str = "") -> None:
        await self.set_job_status(job_name, {
            "startTime": rfc3339(),
            **({"completionTime": rfc3339()} if condition == "Complete" else {}),
            "conditions": [{"type": condition, "status": "True", "reason": reason, "message": message,
                            "lastTransitionTime": rfc3339()}],
        })


def running_pod_status() -> dict[str, Any]:
    return {
        "phase": "Running",
        "conditions": [{"type": "PodScheduled", "status": "True"}],
        "containerStatuses": [{"name": "trainer", "ready": True, "state": {"running": {"startedAt": rfc3339()}}}],
    }


def fast_settings(**overrides: Any) -> OperatorSettings:
    values: dict[str, Any] = {"status_interval_seconds": 0.2, "pending_grace_seconds": 1.0,
                              "artifact_store": "s3://sdxl-artifacts/store"}
    values.update(overrides)
    return OperatorSettings(**values)


OPERATOR_START_TIMEOUT_SECONDS = 30.0
OPERATOR_STOP_TIMEOUT_SECONDS = 30.0


@contextlib.asynccontextmanager
async def embedded_operator(api_server: str, settings: OperatorSettings) -> AsyncIterator[None]:
    """The registry ``sdxl-operator run`` uses, run by Kopf in this event loop against ``api_server``
    (cluster-wide, standalone) for the duration of the block."""
    stop = asyncio.Event()
    ready = asyncio.Event()
    task = asyncio.create_task(kopf.operator(
        registry=build_registry(settings, api_server=api_server), settings=kopf.OperatorSettings(),
        clusterwide=True, standalone=True, stop_flag=stop, ready_flag=ready,
    ), name="sdxl-operator")
    readiness = asyncio.create_task(ready.wait())
    await asyncio.wait({task, readiness}, timeout=OPERATOR_START_TIMEOUT_SECONDS,
                       return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        readiness.cancel()
        task.result()  # raises what stopped the operator
        raise RuntimeError("the operator stopped while starting")
    if not ready.is_set():
        readiness.cancel()
        stop.set()
        raise TimeoutError(f"the operator did not start within {OPERATOR_START_TIMEOUT_SECONDS:.0f}s")
    try:
        yield
    finally:
        stop.set()
        await asyncio.wait_for(task, OPERATOR_STOP_TIMEOUT_SECONDS)


def running_operator(cluster: FakeCluster, **overrides: Any) -> contextlib.AbstractAsyncContextManager[None]:
    """The real operator (Kopf + our registry) in this event loop, cluster-wide and standalone.

    ``overrides`` replace fields of :func:`fast_settings`.
    """
    return embedded_operator(cluster.url, fast_settings(**overrides))


@pytest_asyncio.fixture
async def cluster() -> AsyncIterator[FakeCluster]:
    async with serve_emulator() as (emulator, url):
        yield FakeCluster(emulator, url)
        # Every call the operator made (Kopf's and our handlers') is declared in permissions.py, the list
        # the Helm chart renders its RBAC from: an undeclared call would be refused on a real cluster.
        declared = {(verb, p.group, resource) for p in permissions.all_permissions(peering=False)
                    for verb in p.verbs for resource in p.resources}
        undeclared = sorted({(verb, group, resource) for (agent, verb, group, resource) in emulator.audit
                             if agent.startswith(OPERATOR_AGENTS) and (verb, group, resource) not in declared})
        assert not undeclared, f"the operator made API calls permissions.py does not declare: {undeclared}"
        assert any(agent.startswith(OPERATOR_AGENTS) for agent, *_ in emulator.audit), "no operator calls recorded"


@pytest.fixture
def operator_runner(cluster: FakeCluster) -> Callable[..., contextlib.AbstractAsyncContextManager[None]]:
    """``async with operator_runner(**settings_overrides): ...`` runs the operator for the block."""
    return functools.partial(running_operator, cluster)


@pytest.fixture
def tiny_spec() -> dict[str, Any]:
    return copy.deepcopy(TINY_SPEC)
