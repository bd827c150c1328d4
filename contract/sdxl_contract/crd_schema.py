"""Our CRDs, loaded from this package's data, with their CEL rules compiled once.

``sdxl_contract/crds/`` holds byte-identical copies of the hand-written ``crds/*.yaml`` (``make
sync-crds``; a test holds them equal), so the operator's image and the workloads' images carry the
schema the API server enforces, and validate and default against that one definition.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import celpy
import yaml

CRD_DIR = Path(str(resources.files("sdxl_contract") / "crds"))

CRD_FILES = {
    "SDXLFineTune": "sdxlfinetunes.sdxl.io.yaml",
    "SDXLDeployment": "sdxldeployments.sdxl.io.yaml",
}


@dataclass(frozen=True)
class CelRule:
    """One x-kubernetes-validations entry, compiled."""

    rule: str
    message: str
    field_path: str
    reason: str
    program: Any
    message_program: Any  # messageExpression, compiled; None when the rule has a fixed message
    is_transition: bool


@dataclass(frozen=True)
class LoadedCrd:
    """A CRD file with its storage version's schema and compiled rules."""

    path: Path
    group: str
    version: str
    kind: str
    schema: dict[str, Any]
    rules: dict[int, list[CelRule]]  # id(schema node) -> compiled rules at that node

    @property
    def spec_schema(self) -> dict[str, Any]:
        """The schema of ``.spec``."""
        spec: dict[str, Any] = self.schema["properties"]["spec"]
        return spec


def crd_path_for_kind(kind: str) -> Path:
    """The packaged CRD file that defines ``kind`` (SDXLFineTune or SDXLDeployment)."""
    if kind not in CRD_FILES:
        raise KeyError(f"no CRD defines kind {kind!r}; known kinds: {', '.join(CRD_FILES)}")
    return CRD_DIR / CRD_FILES[kind]


def load_crd_document(crd_path: str | Path) -> dict[str, Any]:
    """The CRD manifest as a dict (a relative path names a packaged CRD by its file name)."""
    with _resolve(crd_path).open(encoding="utf-8") as stream:
        document: dict[str, Any] = yaml.safe_load(stream)
    return document


def version_schema(crd: dict[str, Any], version: str | None = None) -> tuple[str, dict[str, Any]]:
    """(version name, openAPIV3Schema) of the given version, else of the storage version."""
    for entry in crd["spec"]["versions"]:
        if (version is None and entry.get("storage")) or entry["name"] == version:
            return entry["name"], entry["schema"]["openAPIV3Schema"]
    raise KeyError(f"{crd['metadata']['name']}: no version {version or '(storage)'}")


def load_crd(crd: str | Path) -> LoadedCrd:
    """A kind name (``SDXLFineTune``) or CRD file, parsed and compiled once per file version."""
    path = crd_path_for_kind(crd) if isinstance(crd, str) and crd in CRD_FILES else _resolve(crd)
    return _load_crd_cached(str(path), path.stat().st_mtime_ns)


@functools.lru_cache(maxsize=16)
def _load_crd_cached(path: str, _mtime_ns: int) -> LoadedCrd:
    crd = load_crd_document(path)
    version, schema = version_schema(crd)
    rules: dict[int, list[CelRule]] = {}
    environment = celpy.Environment()
    for node, _ in iter_schema_nodes(schema):
        compiled = [_compile_rule(environment, entry) for entry in node.get("x-kubernetes-validations", [])]
        if compiled:
            rules[id(node)] = compiled
    return LoadedCrd(
        path=Path(path),
        group=crd["spec"]["group"],
        version=version,
        kind=crd["spec"]["names"]["kind"],
        schema=schema,
        rules=rules,
    )


def _compile_rule(environment: Any, entry: dict[str, Any]) -> CelRule:
    rule = entry["rule"]
    expression = entry.get("messageExpression")
    return CelRule(
        rule=rule,
        message=(entry.get("message") or f"failed rule: {rule}").strip(),
        field_path=entry.get("fieldPath", ""),
        reason=entry.get("reason", "FieldValueInvalid"),
        program=environment.program(environment.compile(rule)),
        message_program=environment.program(environment.compile(expression)) if expression else None,
        is_transition=re.search(r"\boldSelf\b", rule) is not None,
    )


def iter_schema_nodes(schema: dict[str, Any], path: str = "") -> Iterator[tuple[dict[str, Any], str]]:
    """Every schema node with a readable path: properties as ``.name``, ``[]`` for items, ``{}`` for map values."""
    yield schema, path or "<root>"
    for name, child in schema.get("properties", {}).items():
        yield from iter_schema_nodes(child, f"{path}.{name}")
    if isinstance(schema.get("items"), dict):
        yield from iter_schema_nodes(schema["items"], f"{path}[]")
    if isinstance(schema.get("additionalProperties"), dict):
        yield from iter_schema_nodes(schema["additionalProperties"], f"{path}{{}}")


def _resolve(crd_path: str | Path) -> Path:
    path = Path(crd_path)
    return path if path.is_absolute() else CRD_DIR / path.name
