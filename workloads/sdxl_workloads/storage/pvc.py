"""The `pvc://claim/path` backend: a PersistentVolumeClaim the operator mounts at
`$SDXL_PVC_ROOT/<claim>` (default /mnt/pvc), a local path inside the pod."""

from __future__ import annotations

import os
from pathlib import Path

from sdxl_contract.uris import PVC_SCHEME
from sdxl_contract.workload_protocol import PVC_ROOT, PVC_ROOT_ENV
from sdxl_workloads.protocol import WorkloadError


def pvc_root() -> Path:
    return Path(os.environ.get(PVC_ROOT_ENV, PVC_ROOT))


def pvc_path(uri: str) -> Path:
    """`pvc://claim/some/path` -> `$SDXL_PVC_ROOT/claim/some/path`, refusing an unmounted claim."""
    rest = uri[len(PVC_SCHEME):].strip("/")
    claim, _, inner = rest.partition("/")
    if not claim or ".." in Path(rest).parts:
        raise WorkloadError("InvalidInput", f"{uri}: not a valid pvc:// URI; write pvc://<claim>/<path>")
    mount = pvc_root() / claim
    if not mount.is_dir():
        raise WorkloadError(
            "InvalidInput",
            f"{uri}: the volume claim {claim!r} is not mounted (expected at {mount}); "
            "check the claim name, or set SDXL_PVC_ROOT to where claims are mounted",
        )
    return mount / inner if inner else mount
