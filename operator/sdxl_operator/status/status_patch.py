"""The merge patch that turns the status read from the API into the status computed."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def status_patch(previous: Mapping[str, Any] | None, new: Mapping[str, Any]) -> dict[str, Any]:
    """A merge patch turning ``previous`` into ``new``: keys that disappeared are set to None."""
    patch: dict[str, Any] = {}
    for key, value in new.items():
        old = (previous or {}).get(key)
        if isinstance(value, Mapping) and isinstance(old, Mapping):
            patch[key] = status_patch(old, value)
        else:
            patch[key] = value
    for key in previous or {}:
        if key not in new:
            patch[key] = None
    return patch
