"""End to end through the sandbox when things go wrong: unusable photos, and the operator dying mid-run.

The real operator and trainer run as local processes against the real control plane (nothing
mocked; see tests/e2e/conftest.py).
"""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
from PIL import Image

from sdxl_sandbox.sandbox import FINETUNES, Sandbox

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.asyncio(loop_scope="session")]

NS = "team-b"


async def jobs_of(sandbox: Sandbox, finetune: str) -> list[dict[str, Any]]:
    return [job for job in await sandbox.list("batch/v1/jobs", NS)
            if (job["metadata"].get("labels") or {}).get("sdxl.io/finetune") == finetune]


async def pods_of(sandbox: Sandbox, job: str) -> list[dict[str, Any]]:
    return [pod for pod in await sandbox.list("v1/pods", NS)
            if (pod["metadata"].get("labels") or {}).get("batch.kubernetes.io/job-name") == job]


async def test_unusable_photos_fail_with_the_trainers_message(sandbox: Sandbox, make_finetune: Any) -> None:
    # A claim holding three photos the trainer cannot use: two far too small, one not an image at all.
    photos = sandbox.workdir / "pvcs" / "e2e-photos" / "unusable"
    photos.mkdir(parents=True)
    await sandbox.ensure_namespace(NS)
    await sandbox.ensure_claim(NS, "e2e-photos")
    for name, side in (("tiny.png", 8), ("small.png", 16)):
        png = io.BytesIO()
        Image.new("RGB", (side, side), (200, 120, 90)).save(png, format="PNG")
        (photos / name).write_bytes(png.getvalue())
    (photos / "broken.jpg").write_bytes(b"\xff\xd8 this is not a JPEG")

    await sandbox.apply(make_finetune("bad-photos", NS, instanceImages="pvc://e2e-photos/unusable"))
    failed = await sandbox.wait_for_phase(FINETUNES, NS, "bad-photos", "Failed", 180)

    assert failed["failure"]["reason"] == "InvalidInput"
    message = failed["failure"]["message"]
    assert "tiny.png is 8x8 px, too small for resolution 64" in message
    assert "small.png is 16x16 px" in message
    assert "broken.jpg" in message
    # The message is the trainer's own: what the trainer wrote to its termination log.
    [job] = await jobs_of(sandbox, "bad-photos")
    [pod] = await pods_of(sandbox, job["metadata"]["name"])  # exit code 2: no retry
    [log] = (sandbox.workdir / "pods" / NS).glob(f"{pod['metadata']['name']}-*/termination-log")
    result = json.loads(log.read_text(encoding="utf-8"))
    assert result["status"] == "Failed" and result["reason"] == "InvalidInput"
    assert result["message"] in message
    assert [c["reason"] for c in job["status"]["conditions"] if c["type"] == "Failed"] == ["PodFailurePolicy"]


async def test_operator_killed_mid_training_the_run_finishes_once(sandbox: Sandbox, make_finetune: Any) -> None:
    await sandbox.ensure_namespace(NS)
    await sandbox.apply(make_finetune("restart-subject", NS, training={"maxSteps": 100}))

    async def training() -> dict[str, Any] | None:
        status = await sandbox.status(FINETUNES, NS, "restart-subject")
        return status if (status.get("progress") or {}).get("step") else None

    await sandbox.wait_for("training to report progress", training, 180)
    [job] = await jobs_of(sandbox, "restart-subject")
    assert len([pod for pod in sandbox.local_processes() if pod[0] == NS]) == 1  # the trainer runs as the operator dies
    await sandbox.kill_operator()  # SIGKILL: no chance to clean up
    assert sandbox.operator_pid is None
    await sandbox.start_operator()

    done = await sandbox.wait_for_phase(FINETUNES, NS, "restart-subject", "Succeeded", 240)
    assert done["progress"]["step"] == 100
    assert done["trainingJob"] == job["metadata"]["name"]
    [after] = await jobs_of(sandbox, "restart-subject")  # no second Job
    assert after["metadata"]["uid"] == job["metadata"]["uid"]
    assert len(await pods_of(sandbox, job["metadata"]["name"])) == 1  # and the training was not started again
