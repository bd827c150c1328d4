"""The README's `helm install` and `helm upgrade` commands render with the real chart.

They cannot run without a cluster, so each is rendered by `helm template` with the same arguments
(`--create-namespace` and `--reuse-values` only make sense against a cluster and are dropped): a
misspelt key or a value the chart's schema refuses fails here.
"""

from __future__ import annotations

import itertools
import re
import shlex
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[3]
CLUSTER_ONLY_FLAGS = {"--create-namespace", "--reuse-values"}


def readme_helm_commands() -> list[list[str]]:
    text = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    commands = []
    for block in re.findall(r"```bash\n(.*?)\n```", text, re.DOTALL):
        joined = block.replace("\\\n", " ")
        for line in joined.splitlines():
            words = shlex.split(line, comments=True)
            if words[:2] in (["helm", "install"], ["helm", "upgrade"]):
                commands.append(words)
    return commands


def test_the_readme_shows_install_and_upgrade() -> None:
    verbs = [words[1] for words in readme_helm_commands()]
    assert "install" in verbs and "upgrade" in verbs


@pytest.mark.parametrize("words", readme_helm_commands(), ids=lambda words: words[1])
def test_readme_helm_command_renders(words: list[str], helm: Callable[..., Any]) -> None:
    release, chart, *flags = words[2:]
    assert (REPO_ROOT / chart / "Chart.yaml").exists(), f"the README names chart {chart!r}, which does not exist"
    result = helm("template", release, str(REPO_ROOT / chart), *[f for f in flags if f not in CLUSTER_ONLY_FLAGS])
    assert result.returncode == 0, f"{shlex.join(words)}\n{result.stderr}"
    assert "kind: Deployment" in result.stdout
    # every value the command sets reaches the rendered manifests
    for flag, value in itertools.pairwise(flags):
        if flag == "--set":
            assert value.split("=", 1)[1] in result.stdout, f"{value} does not show in the rendered chart"
