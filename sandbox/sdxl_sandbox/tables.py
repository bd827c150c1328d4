"""What the sandbox prints: the custom resources as ``kubectl get sdxl`` would, plus progress lines."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

COLUMNS = ("NAME", "PHASE", "STEP", "LOSS", "READY", "URL")


def _condition(status: Mapping[str, Any], kind: str) -> Mapping[str, Any]:
    for condition in status.get("conditions") or []:
        if condition.get("type") == kind:
            return condition  # type: ignore[no-any-return]
    return {}


def finetune_row(finetune: Mapping[str, Any]) -> tuple[str, ...]:
    status = finetune.get("status") or {}
    progress = status.get("progress") or {}
    step = f"{progress['step']}/{progress.get('totalSteps', '?')}" if progress.get("step") is not None else "-"
    loss = f"{float(progress['loss']):.4f}" if progress.get("loss") is not None else "-"
    return (f"sdxlfinetune/{finetune['metadata']['name']}", str(status.get("phase") or "-"), step, loss, "-", "-")


def deployment_row(deployment: Mapping[str, Any]) -> tuple[str, ...]:
    status = deployment.get("status") or {}
    wanted = (deployment.get("spec") or {}).get("replicas", 1)
    ready = f"{int(status.get('readyReplicas') or 0)}/{wanted}"
    return (f"sdxldeployment/{deployment['metadata']['name']}", str(status.get("phase") or "-"), "-", "-", ready,
            str(status.get("url") or "-"))


def render_table(rows: Iterable[tuple[str, ...]]) -> str:
    """Rows under the header, columns padded to their widest cell like kubectl's."""
    table = [COLUMNS, *rows]
    widths = [max(len(row[index]) for row in table) for index in range(len(COLUMNS))]
    return "\n".join("   ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in table)


def explanation(obj: Mapping[str, Any]) -> str | None:
    """Why a resource is where it is: its failure, or the message of a condition that holds it back."""
    status = obj.get("status") or {}
    failure = status.get("failure") or {}
    if status.get("phase") == "Failed" and failure:
        return f"{failure.get('reason')}: {failure.get('message')}"
    if obj.get("kind") == "SDXLDeployment" and status.get("phase") not in (None, "Ready"):
        for kind in ("FineTuneReady", "Compiled", "Ready"):
            condition = _condition(status, kind)
            if condition.get("status") == "False" and condition.get("message"):
                return f"{condition.get('reason')}: {condition['message']}"
    return None


def progress_line(finetune: Mapping[str, Any]) -> str | None:
    """``tiny-subject: step 120/200  loss 0.1130  eta 31s`` while training, else None."""
    status = finetune.get("status") or {}
    progress = status.get("progress") or {}
    if status.get("phase") != "Training" or progress.get("step") is None:
        return None
    parts = [f"{finetune['metadata']['name']}: step {progress['step']}/{progress.get('totalSteps', '?')}"]
    if progress.get("loss") is not None:
        parts.append(f"loss {float(progress['loss']):.4f}")
    if progress.get("etaSeconds") is not None:
        parts.append(f"eta {int(progress['etaSeconds'])}s")
    return "  ".join(parts)
