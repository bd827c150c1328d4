"""Run every benchmark in turn (`make bench`); each prints its own table and writes its JSON.

The training comparison needs diffusers' reference script, which is not part of this repository:
set SDXL_REFERENCE_SCRIPT to its path (and build `.venv-reference` as bench/README.md says) to
include it. A failing benchmark is reported and the others still run; the exit code says whether
all of them ran.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent


def benchmarks() -> list[list[str]]:
    runs = [
        [str(BENCH / "operator_scale.py")],
        [str(BENCH / "operator_scale_deployments.py")],
        [str(BENCH / "serve_overhead.py")],
    ]
    reference = os.environ.get("SDXL_REFERENCE_SCRIPT")
    if reference:
        runs.append([str(BENCH / "train_vs_reference.py"), "--reference-script", reference])
    else:
        print("bench: skipping train_vs_reference.py: set SDXL_REFERENCE_SCRIPT (see bench/README.md)")
    return runs


def main() -> int:
    failed = []
    for command in benchmarks():
        name = Path(command[0]).name
        print(f"\n=== {name} ===", flush=True)
        if subprocess.run([sys.executable, *command], check=False).returncode != 0:
            failed.append(name)
    if failed:
        print(f"\nbench: these did not finish: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
