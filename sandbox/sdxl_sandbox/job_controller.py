"""The Job controller of the sandbox: one pod at a time per Job, retries, and the Job's status.

As Kubernetes' own (``completions`` and ``parallelism`` 1, which is what the operator creates): a Job
without an active or succeeded pod gets a new pod (template labels plus ``controller-uid`` and
``job-name``, an ownerReference to the Job); one succeeded pod completes it (``Complete``); a failed
pod whose exit code matches a ``podFailurePolicy`` ``FailJob`` rule fails it at once (reason
``PodFailurePolicy``); more failed pods than ``backoffLimit`` fail it (``BackoffLimitExceeded``);
running past ``activeDeadlineSeconds`` fails it (``DeadlineExceeded``) and deletes its pods.
"""

from __future__ import annotations

import copy
import datetime
import uuid
from collections.abc import Mapping
from typing import Any

from sdxl_sandbox.api_client import KubeClient
from sdxl_sandbox.kubelet import NODE_NAME, now_rfc3339

TERMINAL = ("Succeeded", "Failed")


def owned_by(pods: list[dict[str, Any]], owner: Mapping[str, Any]) -> list[dict[str, Any]]:
    uid = owner["metadata"].get("uid")
    return [pod for pod in pods
            if any(ref.get("uid") == uid for ref in pod["metadata"].get("ownerReferences") or [])]


def pod_from_template(owner: Mapping[str, Any], name: str, extra_labels: Mapping[str, str]) -> dict[str, Any]:
    """A pod as a controller makes it from ``owner``'s pod template, owned by ``owner``."""
    meta = owner["metadata"]
    template = owner["spec"]["template"]
    template_meta = template.get("metadata") or {}
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "name": name, "namespace": meta.get("namespace"),
            "labels": {**(template_meta.get("labels") or {}), **extra_labels},
            "annotations": dict(template_meta.get("annotations") or {}),
            "ownerReferences": [{"apiVersion": owner["apiVersion"], "kind": owner["kind"], "name": meta["name"],
                                 "uid": meta["uid"], "controller": True, "blockOwnerDeletion": True}],
        },
        "spec": {**copy.deepcopy(template["spec"]), "nodeName": NODE_NAME},
        "status": {"phase": "Pending"},
    }


def _exit_code(pod: Mapping[str, Any]) -> tuple[str, int] | None:
    for status in (pod.get("status") or {}).get("containerStatuses") or []:
        terminated = (status.get("state") or {}).get("terminated")
        if terminated:
            return str(status.get("name")), int(terminated.get("exitCode") or 0)
    return None


def _fail_job_rule(job: Mapping[str, Any], pod: Mapping[str, Any]) -> int | None:
    """The index of the ``FailJob`` rule of ``podFailurePolicy`` that the failed ``pod`` matches."""
    found = _exit_code(pod)
    if found is None:
        return None
    container, code = found
    rules = ((job.get("spec") or {}).get("podFailurePolicy") or {}).get("rules") or []
    for index, rule in enumerate(rules):
        codes = rule.get("onExitCodes")
        if rule.get("action") != "FailJob" or not codes:
            continue
        if codes.get("containerName") not in (None, container):
            continue
        inside = code in (codes.get("values") or [])
        if (codes.get("operator") == "In" and inside) or (codes.get("operator") == "NotIn" and not inside):
            return index
    return None


def _seconds_since(timestamp: str) -> float:
    started = datetime.datetime.strptime(timestamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.timezone.utc)
    return (datetime.datetime.now(tz=datetime.timezone.utc) - started).total_seconds()


class JobController:
    """Reconciles every Job (see the module docstring)."""

    def __init__(self, client: KubeClient) -> None:
        self._client = client

    async def sync(self, jobs: list[dict[str, Any]], pods: list[dict[str, Any]]) -> None:
        for job in jobs:
            await self._sync_job(job, owned_by(pods, job))

    async def _sync_job(self, job: dict[str, Any], pods: list[dict[str, Any]]) -> None:
        status = dict(job.get("status") or {})
        conditions = status.get("conditions") or []
        if any(c.get("type") in ("Complete", "Failed") and c.get("status") == "True" for c in conditions):
            for pod in pods:  # a finished Job keeps no running pods
                if (pod.get("status") or {}).get("phase") not in TERMINAL:
                    await self._client.delete(pod)
            return
        spec = job.get("spec") or {}
        active = [p for p in pods if (p.get("status") or {}).get("phase") not in TERMINAL]
        succeeded = [p for p in pods if (p.get("status") or {}).get("phase") == "Succeeded"]
        failed = [p for p in pods if (p.get("status") or {}).get("phase") == "Failed"]
        start_time = str(status.get("startTime") or now_rfc3339())
        new: dict[str, Any] = {"active": len(active), "succeeded": len(succeeded), "failed": len(failed),
                               "startTime": start_time}
        backoff_limit = int(spec.get("backoffLimit", 6))
        deadline = spec.get("activeDeadlineSeconds")
        finished: dict[str, Any] | None = None
        if succeeded:
            finished = {"type": "Complete", "reason": "Completed", "message": "Reached expected number of succeeded pods"}
        else:
            for pod in failed:
                rule = _fail_job_rule(job, pod)
                if rule is not None:
                    container, code = _exit_code(pod) or ("", 0)
                    finished = {"type": "Failed", "reason": "PodFailurePolicy",
                                "message": f"Container {container} for pod {pod['metadata']['namespace']}/"
                                           f"{pod['metadata']['name']} failed with exit code {code} matching "
                                           f"FailJob rule at index {rule}"}
                    break
            if finished is None and len(failed) > backoff_limit:
                finished = {"type": "Failed", "reason": "BackoffLimitExceeded",
                            "message": "Job has reached the specified backoff limit"}
            if finished is None and deadline is not None and _seconds_since(start_time) > float(deadline):
                finished = {"type": "Failed", "reason": "DeadlineExceeded",
                            "message": "Job was active longer than specified deadline"}
        if finished is not None:
            for pod in active:
                await self._client.delete(pod)
            new["active"] = 0
            new["conditions"] = [{**finished, "status": "True", "lastProbeTime": now_rfc3339(),
                                  "lastTransitionTime": now_rfc3339()}]
            if finished["type"] == "Complete":
                new["completionTime"] = now_rfc3339()
        elif not active:
            await self._create_pod(job, attempt=len(failed))
            new["active"] = 1
        if any(status.get(key) != value for key, value in new.items()):
            await self._client.patch_status(job, new)

    async def _create_pod(self, job: Mapping[str, Any], attempt: int) -> None:
        meta = job["metadata"]
        # <job>-<attempt><random>: unique, and ordered by attempt where creation times tie.
        name = f"{meta['name']}-{attempt}{uuid.uuid4().hex[:4]}"
        labels = {"batch.kubernetes.io/controller-uid": meta["uid"], "controller-uid": meta["uid"],
                  "batch.kubernetes.io/job-name": meta["name"], "job-name": meta["name"]}
        await self._client.create(pod_from_template(job, name, labels))
