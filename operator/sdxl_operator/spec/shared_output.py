"""Two SDXLFineTunes of one namespace naming the same ``spec.output``: the earlier one keeps it.

Two trainers writing one output would overwrite each other's checkpoints and LoRA (the store keeps
whichever publish wins, and the other run fails with StorageError ``already published``), and a new
run would overwrite a finished run's LoRA that a deployment may be serving. So a fine-tune whose
explicit output is already the output of another fine-tune of the namespace that is pending, training
or succeeded fails as InvalidSpec before any Job exists. A failed run does not hold its output (a new
run may resume from its checkpoints). Of two created together, the older (then the first by name)
keeps the output. An unset output never collides: the default has the object's uid in it. Pure.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from sdxl_operator.spec.store_tenancy import location


def _same_place(uri: str) -> object:
    place = location(uri)
    return place if place is not None else uri.rstrip("/")


def _order(obj: Mapping[str, Any]) -> tuple[str, str]:
    meta = obj.get("metadata") or {}
    return str(meta.get("creationTimestamp") or ""), str(meta.get("name") or "")


def output_in_use(finetune: Mapping[str, Any], others: Iterable[Mapping[str, Any]]) -> str | None:
    """The error when another fine-tune of the namespace holds ``finetune``'s explicit output, else None."""
    output = (finetune.get("spec") or {}).get("output")
    if not isinstance(output, str) or not output:
        return None
    mine, me = _same_place(output), (finetune.get("metadata") or {})
    for other in others:
        meta = other.get("metadata") or {}
        if meta.get("name") == me.get("name"):
            continue
        theirs = (other.get("spec") or {}).get("output")
        phase = (other.get("status") or {}).get("phase") or "Pending"
        if not isinstance(theirs, str) or _same_place(theirs) != mine or phase == "Failed":
            continue
        if _order(other) <= _order(finetune):
            return (f"spec.output: {output} is already the output of SDXLFineTune {meta.get('name')} in this "
                    f"namespace (phase {phase}); two runs writing one output overwrite each other's LoRA and "
                    "checkpoints. Choose another spec.output, leave it unset (each run then gets its own "
                    f"folder), or delete {meta.get('name')} first")
    return None
