"""The resolved spec: what the trainer reads from ``/etc/sdxl/spec.json``.

The user's spec with every default of the CRD filled in (the typed
:class:`~sdxl_contract.finetune_spec.FineTuneSpec`, built with the API server's own defaulting), ``output`` defaulted to
``<artifactStore>/finetunes/<namespace>/<name>/<uid8>`` (the uid part keeps a re-created fine-tune of
the same name from overwriting the old artifacts; the store is the operator's setting, which a CRD
default cannot name), and ``metadata: {name, namespace, uid}`` so the run can be traced back to its
object. Optional fields without a default (``vae``, ``classPrompt``, ``priorPreservation.classImages``)
stay absent.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from sdxl_contract.finetune_spec import FineTuneSpec
from sdxl_contract.spec_building import to_camel_dict


def default_output(artifact_store: str, namespace: str, name: str, uid: str) -> str:
    """``<artifactStore>/finetunes/<namespace>/<name>/<uid8>``."""
    return f"{artifact_store.rstrip('/')}/finetunes/{namespace}/{name}/{uid[:8]}"


def resolved_finetune_spec(
    spec: FineTuneSpec | Mapping[str, Any], *, name: str, namespace: str, uid: str, artifact_store: str
) -> FineTuneSpec:
    """The typed ``spec`` (or the object's spec as stored, validated; typed here) with its output resolved."""
    typed = spec if isinstance(spec, FineTuneSpec) else FineTuneSpec.from_dict(spec)
    if typed.output:
        return typed
    return dataclasses.replace(typed, output=default_output(artifact_store, namespace, name, uid))


def resolve_finetune_spec(
    spec: FineTuneSpec | Mapping[str, Any],
    *,
    name: str,
    namespace: str,
    uid: str,
    artifact_store: str,
) -> dict[str, Any]:
    """A new dict: ``spec`` with defaults applied, output resolved, and metadata added. Pure.

    ``spec`` is the typed spec, or the object's spec as stored (validated; typed here).
    """
    typed = resolved_finetune_spec(spec, name=name, namespace=namespace, uid=uid, artifact_store=artifact_store)
    resolved: dict[str, Any] = to_camel_dict(typed, keep_unset=False)
    resolved["metadata"] = {"name": name, "namespace": namespace, "uid": uid}
    return resolved
