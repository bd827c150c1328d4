"""The real operator against the emulator over HTTP: the tests play the Job controller and the kubelet.

Fixtures (``cluster``, ``operator_runner``) are in this folder's conftest.py.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

pytestmark = [pytest.mark.asyncio, pytest.mark.slow]

PROGRESS = '{"event": "progress", "step": %d, "totalSteps": 10, "loss": %s, "etaSeconds": %d}\n'
SHA = "ab" * 32


async def test_success_reports_progress_then_artifacts(cluster: Any, operator_runner: Any) -> None:
    async with operator_runner():
        await cluster.create_finetune("ft")
        status = await cluster.wait_for_status("ft", lambda s: s.get("phase") == "Pending")
        assert status["trainingJob"] == "ft-train"
        job = await cluster.wait_for("the Job", lambda: cluster.job("ft-train"))
        spec_json = json.loads(cluster.configmap("ft-spec")["data"]["spec.json"])
        assert spec_json["output"].startswith("s3://sdxl-artifacts/store/finetunes/team-a/ft/")
        assert job["metadata"]["ownerReferences"][0]["kind"] == "SDXLFineTune"

        pod = await cluster.start_pod("ft-train")
        await cluster.run_pod(pod)
        cluster.log(pod, "loading model\n" + PROGRESS % (3, "0.5", 70) + "a log line\n")
        status = await cluster.wait_for_status("ft", lambda s: s.get("progress", {}).get("step") == 3)
        assert status["phase"] == "Training"
        assert status["progress"]["loss"] == 0.5 and status["progress"]["totalSteps"] == 10
        assert status["progress"]["etaSeconds"] == 70 and status["progress"]["updatedAt"]

        cluster.log(pod, PROGRESS % (9, "0.25", 5))
        await cluster.wait_for_status("ft", lambda s: s.get("progress", {}).get("step") == 9)

        result = {"status": "Succeeded",
                  "artifacts": {"lora": "s3://b/lora/pytorch_lora_weights.safetensors", "kohyaLora": "s3://b/k.safetensors",
                                "validationImages": "s3://b/validation"},
                  "metrics": {"loraSha256": SHA, "finalLoss": 0.2, "steps": 10, "seconds": 12.5}}
        await cluster.finish_pod(pod, exit_code=0, message=json.dumps(result))
        await cluster.finish_job("ft-train", "Complete")
        status = await cluster.wait_for_status("ft", lambda s: s.get("phase") == "Succeeded")
        assert status["artifacts"] == {**result["artifacts"], "loraSha256": SHA}
        assert status["progress"]["step"] == 10 and status["progress"]["loss"] == 0.2
        assert status["completionTime"] and "failure" not in status
        ready = next(c for c in status["conditions"] if c["type"] == "Ready")
        assert ready["status"] == "True" and ready["reason"] == "Succeeded"
        # The run is over: the timer stopped and Kopf's finalizer went with it.
        await cluster.wait_for("the finalizer to go", lambda: not cluster.finetune("ft")["metadata"].get("finalizers"))
