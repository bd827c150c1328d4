"""Whether a set of labels matches a standard Kubernetes LabelSelector (matchLabels, matchExpressions).

The semantics of ``metav1.LabelSelector``: every matchLabels pair and every requirement must hold;
``In``/``NotIn`` compare the label's value with ``values`` (``NotIn`` also holds when the label is
absent), ``Exists``/``DoesNotExist`` look at the key only. An empty selector matches everything. Pure.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def selector_matches(selector: Mapping[str, Any], labels: Mapping[str, str] | None) -> bool:
    """Whether ``labels`` satisfy ``selector`` (a LabelSelector as the API server stores it)."""
    labels = labels or {}
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for requirement in selector.get("matchExpressions") or []:
        key, operator = requirement.get("key"), requirement.get("operator")
        values = set(requirement.get("values") or [])
        present = key in labels
        if operator == "In" and not (present and labels[key] in values):
            return False
        if operator == "NotIn" and present and labels[key] in values:
            return False
        if operator == "Exists" and not present:
            return False
        if operator == "DoesNotExist" and present:
            return False
        if operator not in ("In", "NotIn", "Exists", "DoesNotExist"):
            return False  # the CRD refuses other operators; match nothing rather than everything
    return True
