"""The chart's crds/ and the contract package's crds/ are byte-identical copies of the hand-written crds/
(refresh with `make sync-crds`), and Helm installs them as valid CustomResourceDefinitions."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest

REPO_ROOT = Path(__file__).resolve().parents[3]
SOURCE_DIR = REPO_ROOT / "crds"
CHART_CRDS_DIR = REPO_ROOT / "charts" / "sdxl-operator" / "crds"
# The operator and the workloads validate and default specs against this copy (sdxl_contract.schema).
CONTRACT_CRDS_DIR = REPO_ROOT / "contract" / "sdxl_contract" / "crds"


@pytest.mark.parametrize("copies_dir", [CHART_CRDS_DIR, CONTRACT_CRDS_DIR], ids=["chart", "contract"])
def test_crd_copies_are_byte_identical(copies_dir: Path) -> None:
    sources = {p.name: p.read_bytes() for p in SOURCE_DIR.glob("*.yaml")}
    copies = {p.name: p.read_bytes() for p in copies_dir.glob("*") if p.is_file()}
    where = copies_dir.relative_to(REPO_ROOT)
    assert sources, f"no CRDs in {SOURCE_DIR}"
    assert sorted(copies) == sorted(sources), f"{where} differs in files from crds/; run `make sync-crds`"
    stale = [name for name in sources if copies[name] != sources[name]]
    assert stale == [], f"stale copies in {where}: {stale}; run `make sync-crds`"


def test_helm_installs_the_crds_as_valid_definitions(render: Callable[..., Any]) -> None:
    result = render(None, "--include-crds")
    assert result.returncode == 0, result.stderr
    crds = result.of_kind("CustomResourceDefinition")
    # Ours, and Kopf's peering resources (crds/kopf/: the replicas elect the active one through them).
    assert sorted(c["metadata"]["name"] for c in crds) == [
        "clusterkopfpeerings.kopf.dev", "kopfpeerings.kopf.dev", "sdxldeployments.sdxl.io", "sdxlfinetunes.sdxl.io"]
    for crd in crds:
        for version in ("1.29.0", "1.37.0"):  # Chart.yaml kubeVersion and the newest schema bundled
            kubernetes_validate.validate(crd, version, strict=True)
        if crd["spec"]["group"] == "sdxl.io":
            # `kubectl get sdxl` (NOTES.txt) lists both kinds through this category.
            assert "sdxl" in crd["spec"]["names"]["categories"]


def test_the_peering_crds_are_the_ones_kopf_looks_for(render: Callable[..., Any]) -> None:
    """Kopf finds its peering resources by group, version and plural, cluster-wide or per namespace."""
    from kopf._cogs.structs import references

    crds = {c["spec"]["names"]["plural"]: c for c in render(None, "--include-crds").of_kind("CustomResourceDefinition")
            if c["spec"]["group"] == "kopf.dev"}
    for selector, scope in ((references.CLUSTER_PEERINGS_K, "Cluster"), (references.NAMESPACED_PEERINGS_K, "Namespaced")):
        crd = crds[str(selector.any_name)]
        assert (crd["spec"]["group"], crd["spec"]["scope"]) == (selector.group, scope)
        assert [v["name"] for v in crd["spec"]["versions"] if v["served"]] == [selector.version]
        # Kopf writes its peers into .status with a plain patch: no status subresource, any content.
        [version] = crd["spec"]["versions"]
        assert "subresources" not in version
        assert version["schema"]["openAPIV3Schema"]["properties"]["status"]["x-kubernetes-preserve-unknown-fields"]
