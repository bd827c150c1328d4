"""``spec.scheduling`` of both kinds: where and how the workload pods are scheduled, beside ``spec.resources``.

One block, the same in both CRDs (``SDXLFineTune``: the training pod; ``SDXLDeployment``: the compile
and server pods). Each field is shaped as in a Pod spec and passed on to the pods; the CRDs default
and bound them, the operator holds them to the administrator's limits (allowed priority classes,
node-affinity keys, the operator's own labels and annotations).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, kw_only=True)
class Scheduling:
    """Affinity, priority, topology spread and the pods' own labels and annotations."""

    # As in a Pod spec, passed on whole (the API server checks it); node affinity keys are held to the
    # allowed node selector keys. None: the scheduler's defaults.
    affinity: dict[str, Any] | None = None
    priority_class_name: str | None = None  # only classes the administrator allows
    topology_spread_constraints: list[dict[str, Any]]  # as in a Pod spec; labelSelector filled in
    pod_labels: dict[str, str]  # added to the pods, never over the operator's own
    pod_annotations: dict[str, str]  # added to the pods, never over the operator's own
