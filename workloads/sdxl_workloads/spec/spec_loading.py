"""Reading `--spec FILE`: a whole CR manifest, its bare spec, or the operator's resolved spec.

The three shapes (see the workload protocol):
- a manifest: `{apiVersion, kind, metadata, spec, status?}` -> its `spec`;
- a bare spec: the fields of `spec` at the top level;
- the operator's resolved spec: a bare spec with defaults filled in plus `metadata: {name,
  namespace, uid}`, which is split off here.
YAML or JSON; a bad file raises WorkloadError("InvalidInput") naming the file and the line.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from sdxl_workloads.protocol import WorkloadError


class _SpecYamlLoader(yaml.SafeLoader):
    """SafeLoader that reads `1e-4` as a number.

    PyYAML follows YAML 1.1, where a float needs a dot (`1.0e-4`); `learningRate: 1e-4` would
    arrive as the string "1e-4". kubectl (YAML 1.2) reads it as a number, so a manifest must mean
    the same thing here as in the cluster.
    """


_SpecYamlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
                  |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
                  |\.[0-9_]+(?:[eE][-+][0-9]+)?
                  |[-+]?\.(?:inf|Inf|INF)
                  |\.(?:nan|NaN|NAN))$""", re.VERBOSE),
    list("-+0123456789."),
)


@dataclass(frozen=True)
class Manifest:
    """What a spec file holds: the bare spec, and the object's identity when the file has one."""

    spec: dict[str, Any]
    kind: str | None = None  # "SDXLFineTune" / "SDXLDeployment" for a whole manifest
    metadata: dict[str, Any] = field(default_factory=dict)  # name, namespace, uid (when present)


def read_manifest(path: str | os.PathLike[str], expected_kind: str | None = None) -> Manifest:
    """Parse `path` into a Manifest; with `expected_kind`, refuse a manifest of another kind."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise WorkloadError("InvalidInput", f"spec file {path} not found") from None
    except (OSError, UnicodeDecodeError) as err:
        raise WorkloadError("InvalidInput", f"spec file {path}: cannot read it ({err})") from err
    try:
        documents = [doc for doc in yaml.load_all(text, Loader=_SpecYamlLoader) if doc is not None]
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(err, "problem", None) or str(err)
        raise WorkloadError("InvalidInput", f"spec file {path}: not valid YAML or JSON{where}: {problem}") from err
    if not documents:
        raise WorkloadError("InvalidInput", f"spec file {path} is empty; it needs a manifest or a spec")
    if len(documents) > 1:
        raise WorkloadError("InvalidInput", f"spec file {path} holds {len(documents)} YAML documents; "
                            "give a file with exactly one manifest")
    (document,) = documents
    if not isinstance(document, Mapping):
        raise WorkloadError("InvalidInput", f"spec file {path}: expected a mapping at the top level, "
                            f"got {type(document).__name__}")
    return _split(dict(document), path, expected_kind)


def _split(document: dict[str, Any], path: Path, expected_kind: str | None) -> Manifest:
    kind = document.get("kind")
    if "spec" in document and isinstance(document["spec"], Mapping):
        if expected_kind and kind and kind != expected_kind:
            raise WorkloadError("InvalidInput",
                                f"spec file {path} is an {kind} manifest; this command needs an {expected_kind}")
        metadata = document.get("metadata") or {}
        return Manifest(spec=dict(document["spec"]), kind=kind, metadata=dict(metadata))
    if kind is not None or "apiVersion" in document:
        raise WorkloadError("InvalidInput", f"spec file {path}: the manifest has no `spec` mapping")
    metadata = document.pop("metadata", None) or {}
    if not isinstance(metadata, Mapping):
        raise WorkloadError("InvalidInput", f"spec file {path}: metadata must be a mapping")
    return Manifest(spec=document, kind=None, metadata=dict(metadata))


def load_manifest(path: str | os.PathLike[str], expected_kind: str | None = None) -> dict[str, Any]:
    """The bare spec dict from a manifest, bare spec or resolved spec file (see the module doc)."""
    return read_manifest(path, expected_kind).spec
