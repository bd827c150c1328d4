"""Two operator replicas in Kopf peering on the real control plane: one handles resources, the other
stands by and takes over when the first stops.

Both are the real operator with the chart's arguments (``--peering`` with the chart's
ClusterKopfPeering) and RBAC, as the chart's two-replica Deployment runs them; each serves its own
metrics, which say which replica reconciled what.
"""

from __future__ import annotations

import asyncio
import re
import socket
import urllib.request
from typing import Any

import pytest

from sdxl_sandbox.sandbox import Sandbox

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.asyncio(loop_scope="session")]

NS = "team-ha"
PEERING = "sdxl-operator"  # the chart's peering object: its release's full name
FIRST, SECOND = 0, 1  # operator processes, in the order they start


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _finetune_reconciles(port: int) -> float | None:
    """Handler runs on SDXLFineTunes so far (every outcome), from the operator's /metrics; None: not up."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            text = response.read().decode()
    except OSError:
        return None
    pattern = re.compile(r'^sdxl_operator_reconciles_total\{kind="SDXLFineTune",outcome="[a-z]+"\} (\S+)$', re.M)
    return sum(float(value) for value in pattern.findall(text))


async def _reconciles(port: int) -> float:
    value = await asyncio.to_thread(_finetune_reconciles, port)
    assert value is not None, f"no metrics on port {port}"
    return value


async def _jobs_of(sandbox: Sandbox, finetune: str) -> list[dict[str, Any]]:
    return [job for job in await sandbox.list("batch/v1/jobs", NS)
            if (job["metadata"].get("labels") or {}).get("sdxl.io/finetune") == finetune]


def _log_size(sandbox: Sandbox, replica: int) -> int:
    log = sandbox.operator_log_of(replica)
    return log.stat().st_size if log.exists() else 0


def _logged(sandbox: Sandbox, replica: int, text: str, since: int) -> bool:
    """Whether the replica's log has ``text`` past offset ``since`` (the log runs on across restarts;
    Kopf also says "Resuming operations" once at start-up)."""
    log = sandbox.operator_log_of(replica)
    if not log.exists():
        return False
    with log.open("rb") as lines:
        lines.seek(since)
        return text in lines.read().decode("utf-8", errors="replace")


async def test_only_the_active_replica_reconciles_and_the_standby_takes_over(
        sandbox: Sandbox, make_finetune: Any) -> None:
    await sandbox.ensure_namespace(NS)
    ports = {FIRST: _free_port(), SECOND: _free_port()}
    # The first replica again, now serving its metrics; then a second, newer one: the active replica.
    await sandbox.stop_operator(FIRST)
    since = _log_size(sandbox, FIRST)
    await sandbox.start_operator(FIRST, args=(f"--metrics-port={ports[FIRST]}",))
    await sandbox.wait_for("the first replica's metrics", lambda: _finetune_reconciles(ports[FIRST]) is not None, 60)
    await sandbox.start_operator(SECOND, args=(f"--metrics-port={ports[SECOND]}",))
    try:
        await sandbox.wait_for("the first replica to stand by for the second",
                               lambda: _logged(sandbox, FIRST, "Pausing operations in favour of", since), 90)
        peers = (await sandbox.get("kopf.dev/v1/clusterkopfpeerings", "", PEERING) or {}).get("status") or {}
        assert len(peers) == 2, f"the peering object lists {peers}"
        await asyncio.sleep(2)  # a handler that was running when it paused has finished
        standby_before = await _reconciles(ports[FIRST])

        await sandbox.apply(make_finetune("ha-first", NS))
        await sandbox.wait_for("the Job of ha-first", lambda: _jobs_of(sandbox, "ha-first"), 90)
        await sandbox.wait_for("the status of ha-first",
                               lambda: _status_phase(sandbox, "ha-first"), 60)
        assert len(await _jobs_of(sandbox, "ha-first")) == 1
        assert await _reconciles(ports[SECOND]) > 0
        assert await _reconciles(ports[FIRST]) == standby_before, "the standby replica reconciled"

        # The active replica stops (a rolling update, a drain): the standby resumes and reconciles.
        since = _log_size(sandbox, FIRST)
        await sandbox.stop_operator(SECOND)
        await sandbox.wait_for("the first replica to resume",
                               lambda: _logged(sandbox, FIRST, "Resuming operations after the pause", since), 90)
        await sandbox.apply(make_finetune("ha-second", NS))
        await sandbox.wait_for("the Job of ha-second", lambda: _jobs_of(sandbox, "ha-second"), 90)
        await sandbox.wait_for("the status of ha-second", lambda: _status_phase(sandbox, "ha-second"), 60)
        assert len(await _jobs_of(sandbox, "ha-second")) == 1
        assert await _reconciles(ports[FIRST]) > standby_before
    finally:
        await sandbox.stop_operator(SECOND)
        await sandbox.start_operator(FIRST)  # as the session had it, if the test stopped half-way


async def _status_phase(sandbox: Sandbox, name: str) -> str | None:
    phase = (await sandbox.status("sdxl.io/v1alpha1/sdxlfinetunes", NS, name)).get("phase")
    return str(phase) if phase else None
