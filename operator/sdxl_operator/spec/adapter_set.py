"""Which fine-tunes an SDXLDeployment of a set serves (``spec.fineTunes`` or ``spec.fineTuneSelector``).

The candidates are the SDXLFineTunes of the deployment's own namespace that ``spec.fineTunes`` names
or whose labels match ``spec.fineTuneSelector``; objects of any other namespace are ignored whatever
the caller passes (tenants are namespaces). Each candidate ends in one of three lists:

* **served**: phase Succeeded, a LoRA in ``status.artifacts.lora``, trained on the deployment's
  ``baseModel`` (and revision), with a rank the server accepts (``spec.adapters.maxRank``);
* **waiting**: not finished yet (no phase, Pending, Training), or named in ``spec.fineTunes`` but not
  created yet. Nothing is wrong with such a fine-tune: it joins the running server once it has
  succeeded, as a single-fine-tune deployment waits for its fine-tune. So it is not "rejected";
* **rejected**, with a reason: it failed (FineTuneFailed), succeeded without a LoRA (NoLoRA), was
  trained on another base model (BaseModelMismatch: its LoRA does not fit the shared base pipeline),
  or with a rank above the server's limit (RankTooHigh). Only a new fine-tune or a spec change fixes it.

Lists are sorted by name, so the same inputs always give the same adapters file. Pure.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any

from sdxl_operator.spec.default_base_model import DEFAULT_BASE_MODEL, DEFAULT_REVISION
from sdxl_operator.spec.label_selector import selector_matches
from sdxl_operator.spec.model_source import NOT_FOUND, PENDING, TRAINING

SET_FIELDS = ("fineTunes", "fineTuneSelector")
DEFAULT_RESIDENT = 8
DEFAULT_MAX_RANK = 64

# The waiting reasons are a single fine-tune's (model_source): a set member waits for the same things.
FAILED = "FineTuneFailed"
NO_LORA = "NoLoRA"
BASE_MODEL_MISMATCH = "BaseModelMismatch"
RANK_TOO_HIGH = "RankTooHigh"


@dataclasses.dataclass(frozen=True)
class Adapter:
    """A fine-tune served as an adapter: requests choose it by ``name``."""

    name: str
    lora: str


@dataclasses.dataclass(frozen=True)
class Excluded:
    """A fine-tune of the set that is not served (waiting or rejected), and why."""

    name: str
    reason: str
    message: str


@dataclasses.dataclass(frozen=True)
class AdapterSet:
    """The outcome of :func:`resolve_adapter_set`."""

    served: tuple[Adapter, ...]
    waiting: tuple[Excluded, ...]
    rejected: tuple[Excluded, ...]

    def adapters(self) -> dict[str, str]:
        """``{name: LoRA URI}`` of the served fine-tunes: the server's adapters file."""
        return {adapter.name: adapter.lora for adapter in self.served}

    def bucket_of(self, name: str) -> tuple[str, str | None] | None:
        """("served", lora), ("waiting", reason) or ("rejected", reason) for ``name``; None if not a candidate."""
        for adapter in self.served:
            if adapter.name == name:
                return "served", adapter.lora
        for kind, entries in (("waiting", self.waiting), ("rejected", self.rejected)):
            for entry in entries:
                if entry.name == name:
                    return kind, entry.reason
        return None


def is_adapter_set_spec(spec: Mapping[str, Any]) -> bool:
    """Whether an SDXLDeployment spec asks for a set of fine-tunes rather than one model."""
    return any(spec.get(field) is not None for field in SET_FIELDS)


def covers(spec: Mapping[str, Any], finetune: Mapping[str, Any]) -> bool:
    """Whether the set of ``spec`` names or selects ``finetune`` (namespaces are the caller's to compare)."""
    meta = finetune.get("metadata") or {}
    if spec.get("fineTunes") is not None:
        return meta.get("name") in spec["fineTunes"]
    selector = spec.get("fineTuneSelector")
    return isinstance(selector, Mapping) and selector_matches(selector, meta.get("labels"))


def _base_model(spec: Mapping[str, Any], default: str) -> tuple[str, str]:
    return (str(spec.get("baseModel") or default), str(spec.get("baseModelRevision") or DEFAULT_REVISION))


def classify(spec: Mapping[str, Any], finetune: Mapping[str, Any]) -> Adapter | tuple[str, Excluded]:
    """One candidate fine-tune: an :class:`Adapter`, or ("waiting" | "rejected", why)."""
    name = str((finetune.get("metadata") or {}).get("name"))
    ft_spec: Mapping[str, Any] = finetune.get("spec") or {}
    status: Mapping[str, Any] = finetune.get("status") or {}
    wanted = _base_model(spec, DEFAULT_BASE_MODEL)
    trained_on = _base_model(ft_spec, DEFAULT_BASE_MODEL)
    if trained_on != wanted:
        return "rejected", Excluded(name, BASE_MODEL_MISMATCH, (
            f"trained on {trained_on[0]} (revision {trained_on[1]}), but this deployment serves "
            f"{wanted[0]} (revision {wanted[1]}): a LoRA fits only the model it was trained on; serve it "
            "from a deployment of that base model"))
    rank = (ft_spec.get("training") or {}).get("rank")
    max_rank = int((spec.get("adapters") or {}).get("maxRank") or DEFAULT_MAX_RANK)
    if isinstance(rank, int) and rank > max_rank:
        return "rejected", Excluded(name, RANK_TOO_HIGH, (
            f"LoRA rank {rank} is above spec.adapters.maxRank {max_rank}; raise spec.adapters.maxRank "
            f"to at least {rank}"))
    phase = status.get("phase")
    if phase == "Failed":
        failure = status.get("failure") or {}
        detail = f" ({failure.get('reason')}): {failure.get('message')}" if failure else ""
        return "rejected", Excluded(name, FAILED, f"SDXLFineTune {name} failed{detail}")
    if phase == "Succeeded":
        lora = (status.get("artifacts") or {}).get("lora")
        if not lora:
            return "rejected", Excluded(name, NO_LORA,
                                        f"SDXLFineTune {name} succeeded but reported no LoRA in status.artifacts.lora")
        return Adapter(name, str(lora))
    if phase == "Training":
        return "waiting", Excluded(name, TRAINING, f"waiting for SDXLFineTune {name} to finish training")
    return "waiting", Excluded(name, PENDING, f"waiting for SDXLFineTune {name} to start training")


def resolve_adapter_set(spec: Mapping[str, Any], finetunes: Iterable[Mapping[str, Any]], *,
                        namespace: str) -> AdapterSet:
    """The fine-tunes of ``namespace`` among ``finetunes`` that the set ``spec`` serves, waits for, rejects."""
    served: list[Adapter] = []
    waiting: list[Excluded] = []
    rejected: list[Excluded] = []
    found: set[str] = set()
    for finetune in finetunes:
        meta = finetune.get("metadata") or {}
        if meta.get("namespace") != namespace or not covers(spec, finetune):
            continue
        found.add(str(meta.get("name")))
        result = classify(spec, finetune)
        if isinstance(result, Adapter):
            served.append(result)
        elif result[0] == "waiting":
            waiting.append(result[1])
        else:
            rejected.append(result[1])
    for name in spec.get("fineTunes") or []:
        if name not in found:
            waiting.append(Excluded(str(name), NOT_FOUND, f"SDXLFineTune {name} does not exist in this namespace "
                                                          "yet; create it, or correct spec.fineTunes"))
    return AdapterSet(tuple(sorted(served, key=lambda a: a.name)), tuple(sorted(waiting, key=lambda e: e.name)),
                      tuple(sorted(rejected, key=lambda e: e.name)))


def recorded_bucket(status: Mapping[str, Any], name: str) -> tuple[str, str | None] | None:
    """Where an SDXLDeployment's ``status`` lists the fine-tune ``name`` (as :meth:`AdapterSet.bucket_of`)."""
    for adapter in status.get("adapters") or []:
        if adapter.get("name") == name:
            return "served", adapter.get("lora")
    for kind, field in (("waiting", "waitingFineTunes"), ("rejected", "rejectedFineTunes")):
        for entry in status.get(field) or []:
            if entry.get("name") == name:
                return kind, entry.get("reason")
    return None


def needs_refresh(deployment: Mapping[str, Any], finetune: Mapping[str, Any], *, deleted: bool) -> bool:
    """Whether a change of ``finetune`` (or its deletion) changes what the set ``deployment`` serves or lists.

    Compares where the deployment's status lists the fine-tune with where it belongs now, so a running
    fine-tune's progress updates do not re-resolve every deployment of its namespace.
    """
    spec: Mapping[str, Any] = deployment.get("spec") or {}
    meta, ft_meta = deployment.get("metadata") or {}, finetune.get("metadata") or {}
    if not is_adapter_set_spec(spec) or meta.get("namespace") != ft_meta.get("namespace"):
        return False
    name = str(ft_meta.get("name"))
    now = None
    if not deleted:
        now = resolve_adapter_set(spec, [finetune], namespace=str(meta.get("namespace"))).bucket_of(name)
    if deleted and name in (spec.get("fineTunes") or []):
        now = ("waiting", NOT_FOUND)
    return now != recorded_bucket(deployment.get("status") or {}, name)
