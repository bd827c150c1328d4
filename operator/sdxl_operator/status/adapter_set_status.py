"""The status fields of an SDXLDeployment that serves a set of fine-tunes. Pure.

On top of what :func:`deployment_status.compute_deployment_status` computes for the server (phase,
replicas, url), a set adds ``adapters[{name, lora, ready}]``, ``waitingFineTunes``,
``rejectedFineTunes`` (each ``{name, reason, message}``) and ``adapterCount``, and its own
FineTuneReady and Compiled conditions: a set waits for no single fine-tune and compiles nothing.

``ready`` approximates "the pods serve it" as "it is in the adapters ConfigMap, which this pass
wrote, and the deployment is Ready": the kubelet updates the mounted file within its sync period and
the server re-reads it every few seconds, so a new adapter may answer 404 for up to about a minute
after ``ready`` turns true.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import Any

from sdxl_operator.spec.adapter_set import AdapterSet, Excluded
from sdxl_operator.status.conditions import make_condition, merge_conditions

READY = "Ready"


def _entries(excluded: tuple[Excluded, ...]) -> list[dict[str, str]]:
    return [{"name": e.name, "reason": e.reason, "message": e.message} for e in excluded]


def with_adapter_set_status(status: Mapping[str, Any], adapter_set: AdapterSet, *, base_model: str,
                            now: datetime.datetime, generation: int) -> dict[str, Any]:
    """A new status: ``status`` with the set's fields and conditions."""
    new = dict(status)
    ready = new.get("phase") == READY
    new["adapters"] = [{"name": a.name, "lora": a.lora, "ready": ready} for a in adapter_set.served]
    new["adapterCount"] = len(adapter_set.served)
    new["waitingFineTunes"] = _entries(adapter_set.waiting)
    new["rejectedFineTunes"] = _entries(adapter_set.rejected)
    for field in ("waitingFineTunes", "rejectedFineTunes"):
        if not new[field]:
            del new[field]
    summary = f"{len(adapter_set.served)} fine-tune(s) served as adapters"
    if adapter_set.waiting:
        summary += f", {len(adapter_set.waiting)} waiting ({', '.join(e.name for e in adapter_set.waiting)})"
    if adapter_set.rejected:
        summary += f", {len(adapter_set.rejected)} rejected ({', '.join(e.name for e in adapter_set.rejected)})"
    new["conditions"] = merge_conditions(new.get("conditions"), [
        make_condition("FineTuneReady", True, "AdapterSetResolved", summary, now=now, generation=generation),
        make_condition("Compiled", True, "NotNeeded",
                       f"a set of fine-tunes is served on the base model {base_model}: nothing to compile",
                       now=now, generation=generation),
    ])
    return new
