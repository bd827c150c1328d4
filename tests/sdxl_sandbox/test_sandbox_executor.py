"""The sandbox's local executor against the API emulator, without the operator.

The containers are small Python scripts (no model), so each test takes a few seconds: what is under
test is the part of Kubernetes the executor plays (Job controller, Deployment controller, kubelet,
Service routing), seen through the API as the operator sees it.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from sdxl_sandbox.api_client import KubeClient
from sdxl_sandbox.kube_emulator import KubeEmulator, serve_emulator
from sdxl_sandbox.local_executor import LocalExecutor

pytestmark = pytest.mark.asyncio
NS = "team-a"

# Reads a mounted ConfigMap file named in its arguments, writes into a claim, reports through the
# termination log and exits with the code in $EXIT_CODE.
JOB_SCRIPT = """
import os, sys, pathlib
print("pod", os.environ["POD_NAME"], "in", os.environ["POD_NAMESPACE"], "ip", os.environ["POD_IP"])
print("config:", pathlib.Path(sys.argv[1]).read_text())
pathlib.Path(sys.argv[2]).mkdir(parents=True, exist_ok=True)
(pathlib.Path(sys.argv[2]) / "out.txt").write_text(os.environ["POD_NAME"])
print("threads", os.environ["OMP_NUM_THREADS"], "home", os.environ["HOME"], flush=True)
code = int(os.environ.get("EXIT_CODE", "0"))
if os.environ.get("WRITE_RESULT") == "1":
    pathlib.Path(os.environ["SDXL_TERMINATION_LOG"]).write_text('{"status": "done"}')
else:
    print("last words before exit", code)
sys.exit(code)
"""

# An HTTP server on --port that answers 200 on every path, and says which version it is.
SERVER_SCRIPT = """
import argparse, http.server, os
parser = argparse.ArgumentParser(); parser.add_argument("--port", type=int); parser.add_argument("--host")
args = parser.parse_args()
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = os.environ["VERSION"].encode()
        self.send_response(200); self.send_header("Content-Length", str(len(body))); self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a): pass
http.server.HTTPServer((args.host, args.port), Handler).serve_forever()
"""


class Cluster:
    def __init__(self, emulator: KubeEmulator, url: str, client: KubeClient, executor: LocalExecutor,
                 workdir: Path) -> None:
        self.emulator, self.url, self.client, self.executor, self.workdir = emulator, url, client, executor, workdir

    def get(self, resource: str, name: str) -> dict[str, Any] | None:
        return self.emulator.live_object(resource, NS, name)

    def pods(self) -> list[dict[str, Any]]:
        return self.emulator.live_objects("v1/pods", NS)

    async def until(self, what: str, check: Callable[[], Any], timeout: float = 30.0) -> Any:
        deadline = time.monotonic() + timeout
        while not (value := check()):
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            await asyncio.sleep(0.1)
        return value


@pytest_asyncio.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[Cluster]:
    async with serve_emulator() as (emulator, url):
        client = KubeClient(url)
        executor = LocalExecutor(url, tmp_path, log_sink=emulator.append_pod_log, threads=1, poll_seconds=0.1)
        executor.start()
        try:
            yield Cluster(emulator, url, client, executor, tmp_path)
        finally:
            await executor.close()
            await client.close()
    assert not executor.running_pids()


def job(name: str, *, exit_code: int = 0, write_result: bool = False, backoff_limit: int = 1,
        fail_on: list[int] | None = None) -> dict[str, Any]:
    container = {
        "name": "main", "image": "ignored:sandbox", "command": [sys.executable, "-c", JOB_SCRIPT],
        "args": ["/etc/conf/settings.txt", "/mnt/pvc/data/results"],
        "env": [
            {"name": "EXIT_CODE", "value": str(exit_code)},
            {"name": "WRITE_RESULT", "value": "1" if write_result else "0"},
            {"name": "HOME", "value": "/tmp"},
            {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
            {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
        ],
        "volumeMounts": [{"name": "conf", "mountPath": "/etc/conf"}, {"name": "data", "mountPath": "/mnt/pvc/data"},
                         {"name": "tmp", "mountPath": "/tmp"}],
        "terminationMessagePath": "/dev/termination-log", "terminationMessagePolicy": "FallbackToLogsOnError",
    }
    spec: dict[str, Any] = {
        "backoffLimit": backoff_limit,
        "template": {"metadata": {"labels": {"app": name}}, "spec": {
            "restartPolicy": "Never", "containers": [container],
            "volumes": [{"name": "conf", "configMap": {"name": "settings"}},
                        {"name": "data", "persistentVolumeClaim": {"claimName": "data"}},
                        {"name": "tmp", "emptyDir": {}}],
        }},
    }
    if fail_on:
        spec["podFailurePolicy"] = {"rules": [{"action": "FailJob", "onExitCodes": {
            "containerName": "main", "operator": "In", "values": fail_on}}]}
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name, "namespace": NS}, "spec": spec}


def job_condition(obj: dict[str, Any] | None) -> tuple[str, str] | None:
    for condition in ((obj or {}).get("status") or {}).get("conditions") or []:
        if condition["status"] == "True" and condition["type"] in ("Complete", "Failed"):
            return condition["type"], condition["reason"]
    return None


async def test_job_runs_its_container_locally_and_completes(cluster: Cluster) -> None:
    await cluster.client.create({"apiVersion": "v1", "kind": "ConfigMap",
                                 "metadata": {"name": "settings", "namespace": NS}, "data": {"settings.txt": "x=1"}})
    await cluster.client.create(job("ok", write_result=True))
    assert await cluster.until("Complete", lambda: job_condition(cluster.get("batch/v1/jobs", "ok"))) == \
        ("Complete", "Completed")

    [pod] = cluster.pods()
    name = pod["metadata"]["name"]
    assert pod["metadata"]["labels"] == {"app": "ok", "job-name": "ok", "batch.kubernetes.io/job-name": "ok",
                                         "controller-uid": cluster.get("batch/v1/jobs", "ok")["metadata"]["uid"],
                                         "batch.kubernetes.io/controller-uid":
                                             cluster.get("batch/v1/jobs", "ok")["metadata"]["uid"]}
    assert pod["metadata"]["ownerReferences"][0]["kind"] == "Job"
    assert pod["status"]["phase"] == "Succeeded"
    terminated = pod["status"]["containerStatuses"][0]["state"]["terminated"]
    assert (terminated["exitCode"], terminated["reason"], terminated["message"]) == (0, "Completed",
                                                                                      '{"status": "done"}')
    log = await fetch(f"{cluster.url}/api/v1/namespaces/{NS}/pods/{name}/log")  # as kubectl logs reads it
    assert f"pod {name} in {NS} ip 127.0.0.1" in log
    assert "config: x=1" in log
    home = log.split("home ", 1)[1].split()[0]
    assert home != "/tmp" and home.startswith(str(cluster.workdir))  # the emptyDir, as a local folder
    assert "threads 1" in log
    assert (cluster.workdir / "pvcs" / "data" / "results" / "out.txt").read_text() == name
    status = cluster.get("batch/v1/jobs", "ok")["status"]
    assert (status["succeeded"], status["failed"], status["active"]) == (1, 0, 0)


async def test_job_waits_for_its_configmap(cluster: Cluster) -> None:
    await cluster.client.create(job("later", write_result=True))
    await cluster.until("the pod to wait", lambda: [
        p for p in cluster.pods()
        if (p["status"]["containerStatuses"][0]["state"].get("waiting") or {}).get("reason") == "ContainerCreating"])
    assert not cluster.executor.running_pids()
    await cluster.client.create({"apiVersion": "v1", "kind": "ConfigMap",
                                 "metadata": {"name": "settings", "namespace": NS}, "data": {"settings.txt": "y"}})
    assert await cluster.until("Complete", lambda: job_condition(cluster.get("batch/v1/jobs", "later")))


async def test_failed_pods_are_retried_up_to_the_backoff_limit(cluster: Cluster) -> None:
    await cluster.client.create({"apiVersion": "v1", "kind": "ConfigMap",
                                 "metadata": {"name": "settings", "namespace": NS}, "data": {"settings.txt": "x"}})
    await cluster.client.create(job("flaky", exit_code=1, backoff_limit=1))
    assert await cluster.until("Failed", lambda: job_condition(cluster.get("batch/v1/jobs", "flaky"))) == \
        ("Failed", "BackoffLimitExceeded")
    pods = cluster.pods()
    assert len(pods) == 2 and {p["status"]["phase"] for p in pods} == {"Failed"}
    terminated = pods[0]["status"]["containerStatuses"][0]["state"]["terminated"]
    assert (terminated["exitCode"], terminated["reason"]) == (1, "Error")
    assert "last words before exit 1" in terminated["message"]  # FallbackToLogsOnError: the log's tail
    assert cluster.get("batch/v1/jobs", "flaky")["status"]["failed"] == 2


async def test_pod_failure_policy_fails_the_job_at_once(cluster: Cluster) -> None:
    await cluster.client.create({"apiVersion": "v1", "kind": "ConfigMap",
                                 "metadata": {"name": "settings", "namespace": NS}, "data": {"settings.txt": "x"}})
    await cluster.client.create(job("invalid", exit_code=2, backoff_limit=3, fail_on=[2]))
    assert await cluster.until("Failed", lambda: job_condition(cluster.get("batch/v1/jobs", "invalid"))) == \
        ("Failed", "PodFailurePolicy")
    assert len(cluster.pods()) == 1


def deployment(version: str, replicas: int = 1) -> dict[str, Any]:
    labels = {"app": "web"}
    container = {
        "name": "server", "image": "ignored:sandbox", "command": [sys.executable, "-c", SERVER_SCRIPT],
        "args": ["--port", "8080"], "env": [{"name": "VERSION", "value": version}],
        "ports": [{"name": "http", "containerPort": 8080}],
        "readinessProbe": {"httpGet": {"path": "/readyz", "port": "http"}, "periodSeconds": 1},
    }
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": NS},
            "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels, "annotations": {"version": version}},
                                  "spec": {"containers": [container]}}}}


async def fetch(url: str) -> str:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return await response.text()


async def test_deployment_serves_rolls_out_without_downtime_and_stops_when_deleted(cluster: Cluster) -> None:
    await cluster.client.create({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": NS},
                                 "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": "http"}]}})
    created = await cluster.client.create(deployment("v1"))

    def available() -> dict[str, Any] | None:
        status = (cluster.get("apps/v1/deployments", "web") or {}).get("status") or {}
        conditions = {c["type"]: c["status"] for c in status.get("conditions") or []}
        return status if status.get("readyReplicas") == 1 and conditions.get("Available") == "True" \
            and status.get("updatedReplicas") == 1 and status.get("replicas") == 1 else None

    status = await cluster.until("the Deployment to be available", available)
    assert status["observedGeneration"] == 1
    url = await cluster.until("the Service to route", lambda: cluster.executor.service_url(NS, "web"))
    assert await fetch(url) == "v1"
    [old_pod] = cluster.pods()
    assert old_pod["metadata"]["annotations"] == {"version": "v1"}
    assert old_pod["status"]["conditions"][-1] == {"type": "Ready", "status": "True"}

    changed = deployment("v2")
    await cluster.client.patch(created, {"spec": {"template": changed["spec"]["template"]}})
    # Old pod serves until the new one is ready; at no point is nothing routed.
    answers = set()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        url = cluster.executor.service_url(NS, "web")
        assert url is not None, "the Service lost every endpoint during the rollout"
        answers.add(await fetch(url))
        pods = cluster.pods()
        if answers == {"v1", "v2"} and len(pods) == 1 and pods[0]["metadata"]["annotations"] == {"version": "v2"}:
            break
        await asyncio.sleep(0.1)
    assert answers == {"v1", "v2"}
    [new_pod] = cluster.pods()
    assert new_pod["metadata"]["annotations"] == {"version": "v2"}
    status = await cluster.until("the rollout to finish", available)
    assert status["observedGeneration"] == 2
    assert [key for key in cluster.executor.running_pids()] == [(NS, new_pod["metadata"]["name"])]

    await cluster.client.delete(created)  # the emulator garbage-collects the pods, the kubelet stops them
    await cluster.until("the pods to go", lambda: not cluster.pods())
    await cluster.until("the processes to stop", lambda: not cluster.executor.running_pids()
                        and not cluster.executor.kubelet.stopping)
