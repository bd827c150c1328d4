"""Kubernetes label selector strings (``a=b,c!=d,e in (x,y),!f``) parsed and matched, for the emulator."""

from __future__ import annotations

import re
from collections.abc import Mapping

# (key, operator, values): operator is one of "=", "!=", "in", "notin", "exists", "!exists".
Requirement = tuple[str, str, frozenset[str]]

_SET_FORM = re.compile(r"^\s*(!?)([^\s!=(),]+)\s*(?:(notin|in)\s*\(([^)]*)\))?\s*$")


def _split(selector: str) -> list[str]:
    """Split on commas that are not inside parentheses."""
    parts: list[str] = []
    depth = 0
    current = ""
    for char in selector:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    parts.append(current)
    return [part.strip() for part in parts if part.strip()]


def parse_selector(selector: str) -> list[Requirement]:
    """Parse a label selector; raises ValueError naming the part it cannot read."""
    requirements: list[Requirement] = []
    for part in _split(selector or ""):
        if "!=" in part:
            key, value = part.split("!=", 1)
            requirements.append((key.strip(), "!=", frozenset({value.strip()})))
        elif "=" in part:
            key, value = part.replace("==", "=").split("=", 1)
            requirements.append((key.strip(), "=", frozenset({value.strip()})))
        else:
            match = _SET_FORM.match(part)
            if match is None:
                raise ValueError(f"cannot parse label selector requirement {part!r}")
            negated, key, operator, values = match.groups()
            if operator:
                requirements.append((key, operator, frozenset(v.strip() for v in values.split(",") if v.strip())))
            else:
                requirements.append((key, "!exists" if negated else "exists", frozenset()))
    return requirements


def matches_selector(labels: Mapping[str, str], requirements: list[Requirement]) -> bool:
    """Whether ``labels`` satisfy every requirement."""
    for key, operator, values in requirements:
        present = key in labels
        value = labels.get(key)
        if operator in ("=", "in") and (not present or value not in values):
            return False
        if operator in ("!=", "notin") and present and value in values:
            return False
        if operator == "exists" and not present:
            return False
        if operator == "!exists" and present:
            return False
    return True
