"""The API key is the normal path: every example meant for a cluster serves behind one, and the
README's install creates the Secret those examples name. (deployment-cpu.yaml is the local demo's.)"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
CLUSTER_EXAMPLES = ("deployment-neuron.yaml", "deployment-nvidia.yaml")


@pytest.mark.parametrize("example", CLUSTER_EXAMPLES)
def test_cluster_examples_serve_behind_an_api_key(example: str) -> None:
    manifest = yaml.safe_load((REPO_ROOT / "crds" / "examples" / example).read_text())
    assert manifest["spec"]["auth"]["apiKeySecret"] == "sdxl-api-key"


def test_the_readme_install_creates_the_key_the_examples_name() -> None:
    readme = (REPO_ROOT / "README.md").read_text()
    install = readme.split("## Install on a cluster", 1)[1].split("\n## ", 1)[0]
    assert re.search(r"kubectl -n \S+ create secret generic sdxl-api-key --from-literal=api-key=", install), install
