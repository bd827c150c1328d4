"""The README's shell blocks marked `<!-- runnable -->` work exactly as written.

Each block runs in bash (`set -e`), in a fresh folder that holds links to the repository's `crds/`
and `charts/`, with this environment's console scripts first on PATH — what a reader has after
`make setup` and `source .venv/bin/activate`. Nothing is mocked.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
README = REPO_ROOT / "README.md"
RUNNABLE = re.compile(r"<!-- runnable -->\s*\n```bash\n(.*?)\n```", re.DOTALL)


def runnable_blocks() -> list[str]:
    return RUNNABLE.findall(README.read_text(encoding="utf-8"))


def test_readme_marks_runnable_blocks() -> None:
    blocks = runnable_blocks()
    assert len(blocks) >= 2, "the README should mark its locally runnable examples with <!-- runnable -->"


@pytest.mark.slow
@pytest.mark.e2e
@pytest.mark.parametrize("index", range(len(runnable_blocks())))
def test_readme_block_runs(index: int, tmp_path: Path) -> None:
    block = runnable_blocks()[index]
    for folder in ("crds", "charts"):
        (tmp_path / folder).symlink_to(REPO_ROOT / folder)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", block], cwd=tmp_path, env=env,
        capture_output=True, text=True, timeout=600, check=False,
    )
    assert result.returncode == 0, f"README block {index} failed:\n{block}\n--- stderr ---\n{result.stderr[-4000:]}"
    written = [p for p in tmp_path.rglob("*") if not p.is_symlink() and p.is_file()]
    assert written, f"README block {index} ran but wrote nothing"
