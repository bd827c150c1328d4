"""A running pod's ConfigMap folders follow their ConfigMap, as the kubelet updates ConfigMap volumes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sdxl_sandbox.path_mapping import prepare_volumes, refresh_configmap_volumes

POD = {"volumes": [{"name": "adapters", "configMap": {"name": "dep-adapters"}},
                   {"name": "spec", "configMap": {"name": "spec", "items": [{"key": "spec.json", "path": "s.json"}]}},
                   {"name": "pinned", "configMap": {"name": "dep-adapters"}}]}
CONTAINER = {"volumeMounts": [{"name": "adapters", "mountPath": "/etc/sdxl/adapters"},
                              {"name": "spec", "mountPath": "/etc/sdxl/spec"},
                              {"name": "pinned", "mountPath": "/etc/pinned.json", "subPath": "adapters.json"}]}


def configmaps(adapters: dict[str, str] | None, spec: str = "{}") -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {"spec": {"metadata": {"name": "spec"}, "data": {"spec.json": spec}}}
    if adapters is not None:
        found["dep-adapters"] = {"metadata": {"name": "dep-adapters"}, "data": adapters}
    return found


def test_a_changed_configmap_rewrites_its_folder_but_never_a_sub_path_mount(tmp_path: Path) -> None:
    filesystem = prepare_volumes(POD, CONTAINER, pod_dir=tmp_path, pvc_root=tmp_path / "pvcs",
                                 configmaps=configmaps({"adapters.json": "one", "old.txt": "x"}), secrets={})
    adapters = Path(filesystem.local_path("/etc/sdxl/adapters/adapters.json"))
    pinned = Path(filesystem.local_path("/etc/pinned.json"))
    assert adapters.read_text() == "one"
    assert refresh_configmap_volumes(POD, CONTAINER, pod_dir=tmp_path,
                                     configmaps=configmaps({"adapters.json": "one", "old.txt": "x"})) == []

    changed = refresh_configmap_volumes(POD, CONTAINER, pod_dir=tmp_path,
                                        configmaps=configmaps({"adapters.json": "two"}, spec='{"a": 1}'))
    assert changed == ["adapters", "spec"]
    assert adapters.read_text() == "two"
    assert not (adapters.parent / "old.txt").exists()  # a removed key goes
    assert Path(filesystem.local_path("/etc/sdxl/spec/s.json")).read_text() == '{"a": 1}'
    assert pinned.read_text() == "one"  # the kubelet never updates a subPath mount
    assert not [p for p in adapters.parent.iterdir() if p.name.startswith(".")]  # no temporary left behind


def test_a_configmap_that_is_gone_leaves_the_last_files(tmp_path: Path) -> None:
    filesystem = prepare_volumes(POD, CONTAINER, pod_dir=tmp_path, pvc_root=tmp_path / "pvcs",
                                 configmaps=configmaps({"adapters.json": "one"}), secrets={})
    assert refresh_configmap_volumes(POD, CONTAINER, pod_dir=tmp_path, configmaps=configmaps(None)) == []
    assert Path(filesystem.local_path("/etc/sdxl/adapters/adapters.json")).read_text() == "one"
