"""``status.quality`` of a finished fine-tune: the trainer's quality report, checked key by key.

The report arrives in the termination message, which a workload writes and the operator only
trusts as far as the CRD's schema goes: known keys only, numbers in their ranges, counts as
non-negative integers, skip reasons as short strings. Anything else is dropped rather than written,
so a malformed report can never make the status patch fail.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sdxl_contract import quality_keys

# Bounds of each metric, as the CRD's status schema declares them (None: unbounded).
_RANGES: dict[str, tuple[float | None, float]] = {
    quality_keys.IDENTITY: (0.0, 1.0),
    quality_keys.PROMPT_FIDELITY: (0.0, 1.0),
    quality_keys.CLASS_DRIFT: (-1.0, 1.0),
    quality_keys.CLIP_IMAGE: (-1.0, 1.0),
    quality_keys.CLIP_TEXT: (-1.0, 1.0),
    quality_keys.DINO: (-1.0, 1.0),
    quality_keys.FACE: (None, 1.0),
}
MAX_REASON_CHARS = 256  # the CRD's maxLength of a skip reason

# How the Ready condition's message names each metric.
_LABELS = {
    quality_keys.IDENTITY: "identity", quality_keys.PROMPT_FIDELITY: "prompt fidelity",
    quality_keys.CLASS_DRIFT: "class drift", quality_keys.CLIP_IMAGE: "CLIP-I",
    quality_keys.CLIP_TEXT: "CLIP-T", quality_keys.DINO: "DINO", quality_keys.FACE: "face",
}


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def quality_from_result(result: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The ``status.quality`` block from a trainer's result, or None when it reported none."""
    report = ((result or {}).get("metrics") or {}).get(quality_keys.QUALITY)
    if not isinstance(report, Mapping):
        return None
    quality: dict[str, Any] = {}
    for key in quality_keys.COUNTS:
        count = report.get(key)
        if isinstance(count, int) and not isinstance(count, bool) and count >= 0:
            quality[key] = count
    for key, (low, high) in _RANGES.items():
        value = _number(report.get(key))
        if value is not None and (low is None or value >= low) and value <= high:
            quality[key] = value
    skipped = report.get(quality_keys.SKIPPED)
    if isinstance(skipped, Mapping):
        reasons = {key: str(reason)[:MAX_REASON_CHARS] for key, reason in skipped.items()
                   if key in quality_keys.METRICS and isinstance(reason, str)}
        if reasons:
            quality[quality_keys.SKIPPED] = reasons
    return quality or None


def quality_summary(quality: Mapping[str, Any]) -> str:
    """One line for the Ready condition, e.g. "quality: identity 1.00, prompt fidelity 0.94, class drift 0.00"."""
    shown = [f"{_LABELS[key]} {quality[key]:.2f}" for key in quality_keys.METRICS if key in quality]
    skipped = quality.get(quality_keys.SKIPPED) or {}
    if skipped:
        shown.append(f"{len(skipped)} skipped")
    return f"quality: {', '.join(shown)}" if shown else ""
