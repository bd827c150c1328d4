"""Container paths mapped to folders on this machine, for pods the sandbox runs as local processes.

A container sees its volumes at mount paths (``/etc/sdxl``, ``/mnt/pvc/<claim>``, ``/tmp``); a local
process has no such mounts. Each volume becomes a folder under the sandbox's work dir instead, and
every mount path that occurs in the container's arguments or environment is rewritten to its folder:

* ``configMap`` / ``secret``: a fresh folder per pod with the object's keys written as files (all keys,
  or the ``items`` asked for). As the kubelet does, a running pod's ConfigMap folders follow later
  changes of their ConfigMap (:func:`refresh_configmap_volumes`), except those mounted with
  ``subPath``, which the kubelet never updates;
* ``emptyDir``: a fresh folder per pod (``medium: Memory`` too);
* ``persistentVolumeClaim``: ``<workdir>/pvcs/<claimName>``, shared by every pod, as a claim is.
"""

from __future__ import annotations

import base64
import dataclasses
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any


class VolumeNotReady(Exception):
    """A volume's source object (ConfigMap, Secret) does not exist yet; the pod waits, as kubelet would."""


@dataclasses.dataclass(frozen=True)
class PodFilesystem:
    """Where each mount path of one container lives on this machine."""

    mounts: Mapping[str, Path]

    def local_path(self, container_path: str) -> str:
        """The local path of ``container_path`` (the longest mount path that contains it wins)."""
        for mount in sorted(self.mounts, key=len, reverse=True):
            if container_path == mount or container_path.startswith(mount.rstrip("/") + "/"):
                return str(self.mounts[mount]) + container_path[len(mount.rstrip("/")):]
        return container_path

    def rewrite(self, text: str) -> str:
        """``text`` with every mount path that appears in it as a whole path prefix made local."""
        if not self.mounts:
            return text
        # Longest first, so /mnt/pvc/a-b wins over /mnt/pvc/a; a mount path counts only where it is
        # not part of a longer word or path (``/tmpfoo`` and ``x/tmp`` stay as they are).
        alternatives = "|".join(re.escape(m.rstrip("/")) for m in sorted(self.mounts, key=len, reverse=True))
        pattern = re.compile(rf"(?<![\w./-])({alternatives})(?=/|$|[^\w.-])")
        by_path = {m.rstrip("/"): str(path) for m, path in self.mounts.items()}
        return pattern.sub(lambda match: by_path[match.group(1)], text)


def _project(folder: Path, volume_name: str, source: Mapping[str, Any], what: str,
             files: dict[str, bytes] | None) -> None:
    """Write a ConfigMap's or Secret's ``files`` into ``folder``; a missing object is an error unless optional."""
    if files is not None:
        _write_items(folder, files, source.get("items"))
    elif source.get("optional"):
        folder.mkdir(parents=True, exist_ok=True)
    else:
        raise VolumeNotReady(f"{what} (volume {volume_name!r}) not found")


def _write_items(folder: Path, data: Mapping[str, bytes], items: list[dict[str, Any]] | None) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    wanted = [(item["key"], item.get("path") or item["key"]) for item in items] if items else \
        [(key, key) for key in data]
    for key, relative in wanted:
        if key not in data:
            raise VolumeNotReady(f"key {key!r} is not in the volume's source")
        target = folder / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data[key])


def _configmap_files(configmap: Mapping[str, Any]) -> dict[str, bytes]:
    files = {key: str(value).encode("utf-8") for key, value in (configmap.get("data") or {}).items()}
    files.update({key: base64.b64decode(value) for key, value in (configmap.get("binaryData") or {}).items()})
    return files


def _secret_files(secret: Mapping[str, Any]) -> dict[str, bytes]:
    files = {key: base64.b64decode(value) for key, value in (secret.get("data") or {}).items()}
    files.update({key: str(value).encode("utf-8") for key, value in (secret.get("stringData") or {}).items()})
    return files


def prepare_volumes(
    pod_spec: Mapping[str, Any], container: Mapping[str, Any], *, pod_dir: Path, pvc_root: Path,
    configmaps: Mapping[str, Mapping[str, Any]], secrets: Mapping[str, Mapping[str, Any]],
) -> PodFilesystem:
    """Create the folders of the container's volumes and return where each mount path went.

    ``configmaps`` / ``secrets``: the pod's namespace's objects by name. Raises :class:`VolumeNotReady`
    when a volume's source is missing (and not ``optional``), or ValueError for a volume type the
    sandbox does not emulate.
    """
    volumes = {volume["name"]: volume for volume in pod_spec.get("volumes") or []}
    mounts: dict[str, Path] = {}
    for mount in container.get("volumeMounts") or []:
        volume = volumes.get(mount["name"])
        if volume is None:
            raise ValueError(f"volumeMount {mount['name']!r} names no volume of the pod")
        folder = pod_dir / "volumes" / volume["name"]
        if "persistentVolumeClaim" in volume:
            folder = pvc_root / volume["persistentVolumeClaim"]["claimName"]
            folder.mkdir(parents=True, exist_ok=True)
        elif "emptyDir" in volume:
            folder.mkdir(parents=True, exist_ok=True)
        elif "configMap" in volume:
            source = volume["configMap"]
            found = configmaps.get(source["name"])
            _project(folder, volume["name"], source, f"ConfigMap {source['name']!r}",
                     None if found is None else _configmap_files(found))
        elif "secret" in volume:
            source = volume["secret"]
            found = secrets.get(source["secretName"])
            _project(folder, volume["name"], source, f"Secret {source['secretName']!r}",
                     None if found is None else _secret_files(found))
        else:
            kinds = sorted(set(volume) - {"name"})
            raise ValueError(f"volume {volume['name']!r}: type {kinds} is not emulated by the sandbox "
                             "(configMap, secret, emptyDir and persistentVolumeClaim are)")
        sub_path = mount.get("subPath")
        mounts[mount["mountPath"]] = folder / sub_path if sub_path else folder
    return PodFilesystem(mounts)


def _replace_file(target: Path, content: bytes) -> bool:
    """Write ``content`` to ``target`` through a temporary file and a rename, so a reader never sees half
    a file (the kubelet swaps a symlink for the same reason); False when it already held ``content``."""
    try:
        if target.read_bytes() == content:
            return False
    except OSError:
        pass
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_name(f".{target.name}.tmp")
    temporary.write_bytes(content)
    os.replace(temporary, target)
    return True


def refresh_configmap_volumes(pod_spec: Mapping[str, Any], container: Mapping[str, Any], *, pod_dir: Path,
                              configmaps: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Bring the container's ConfigMap folders up to date with ``configmaps``; the names of those changed.

    What the kubelet's periodic sync does for a running pod: keys changed or added are rewritten, keys
    removed are removed. A volume mounted with ``subPath`` stays as it started, and a ConfigMap that is
    gone, or lacks a key its ``items`` ask for, leaves the folder as it was (the kubelet keeps the last
    files too).
    """
    volumes = {volume["name"]: volume for volume in pod_spec.get("volumes") or []}
    changed: list[str] = []
    for mount in container.get("volumeMounts") or []:
        volume = volumes.get(mount["name"])
        if volume is None or "configMap" not in volume or mount.get("subPath"):
            continue
        source = volume["configMap"]
        found = configmaps.get(source["name"])
        if found is None:
            continue
        files = _configmap_files(found)
        items = source.get("items")
        wanted = {item.get("path") or item["key"]: item["key"] for item in items} if items else {k: k for k in files}
        if any(key not in files for key in wanted.values()):
            continue
        folder = pod_dir / "volumes" / volume["name"]
        touched = False
        for relative, key in wanted.items():
            touched = _replace_file(folder / relative, files[key]) or touched
        if folder.is_dir():
            for stale in [p for p in folder.rglob("*") if p.is_file()]:
                if str(stale.relative_to(folder)) not in wanted:
                    stale.unlink()
                    touched = True
        if touched:
            changed.append(volume["name"])
    return changed
