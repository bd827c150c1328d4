"""The chart's crds/ are byte-identical copies of the hand-written crds/ (refresh with `make sync-crds`),
and Helm installs them as valid CustomResourceDefinitions."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import kubernetes_validate

REPO_ROOT = Path(__file__).resolve().parents[3]
SOURCE_DIR = REPO_ROOT / "crds"
CHART_CRDS_DIR = REPO_ROOT / "charts" / "sdxl-operator" / "crds"


def test_chart_crds_are_byte_identical_copies() -> None:
    sources = {p.name: p.read_bytes() for p in SOURCE_DIR.glob("*.yaml")}
    copies = {p.name: p.read_bytes() for p in CHART_CRDS_DIR.glob("*")}
    assert sources, f"no CRDs in {SOURCE_DIR}"
    assert sorted(copies) == sorted(sources), "chart crds/ differ in files from crds/; run `make sync-crds`"
    stale = [name for name in sources if copies[name] != sources[name]]
    assert stale == [], f"stale copies in charts/sdxl-operator/crds: {stale}; run `make sync-crds`"


def test_helm_installs_the_crds_as_valid_definitions(render: Callable[..., Any]) -> None:
    result = render(None, "--include-crds")
    assert result.returncode == 0, result.stderr
    crds = result.of_kind("CustomResourceDefinition")
    assert sorted(c["metadata"]["name"] for c in crds) == ["sdxldeployments.sdxl.io", "sdxlfinetunes.sdxl.io"]
    for crd in crds:
        for version in ("1.29.0", "1.37.0"):  # Chart.yaml kubeVersion and the newest schema bundled
            kubernetes_validate.validate(crd, version, strict=True)
        # `kubectl get sdxl` (NOTES.txt) lists both kinds through this category.
        assert "sdxl" in crd["spec"]["names"]["categories"]
