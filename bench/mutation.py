"""Mutation testing (`make mutation`): bugs planted by cosmic-ray, one at a time, against the tests.

Each target is a part of the product whose bugs users would feel (the training loop, the storage
writes, the operator's status functions, the server core) with the tests that should catch them.
For every mutant cosmic-ray edits one operator in the source (`<` to `<=`, `+` to `-`, a constant,
a removed `not`...), runs the target's tests, and records whether they failed (killed) or passed
(survived). The score is killed / (killed + survived); a survivor is a bug no test would notice.

cosmic-ray edits files in place, so everything runs in a copy of the working tree (never in the
checkout others are using), with that copy's packages first on PYTHONPATH. It is slow (a whole
test run per mutant) and is not part of `make test`:

    .venv/bin/python bench/mutation.py                          # every target, every mutant
    .venv/bin/python bench/mutation.py --targets status --sample 40 --seed 1

Results: a table, bench/results/mutation.json, and the surviving mutants' diffs in it.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import random
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_JSON = REPO_ROOT / "bench" / "results" / "mutation.json"
COPY_IGNORE = shutil.ignore_patterns(".git", ".venv", ".venv-*", "__pycache__", ".pytest_cache", ".mypy_cache",
                                     ".ruff_cache", ".sandbox", "demo-output", "*.egg-info", "results")


@dataclass(frozen=True)
class Target:
    name: str
    modules: tuple[str, ...]  # files to mutate, relative to the repository root
    tests: tuple[str, ...]  # the tests that should catch their bugs
    timeout: float  # seconds per mutant's test run (a mutant that hangs counts as killed)


TARGETS = (
    Target("training-loop", ("workloads/sdxl_workloads/train/training_loop.py",),
           ("tests/sdxl_workloads/train/test_train_recipe_wiring.py",
            "tests/sdxl_workloads/train/test_train_recipe.py",
            "tests/sdxl_workloads/train/test_train_random_draws.py",
            "tests/sdxl_workloads/train/test_train_sigterm.py",
            "tests/sdxl_workloads/train/test_train_resume.py"), 900.0),
    Target("storage-writes", ("workloads/sdxl_workloads/storage/output.py", "workloads/sdxl_workloads/storage/local.py",
                              "workloads/sdxl_workloads/storage/atomic_write.py",
                              "workloads/sdxl_workloads/train/checkpoints.py"),
           ("tests/sdxl_workloads/storage/test_wl_storage.py",
            "tests/sdxl_workloads/train/test_train_checkpoint_integrity.py"), 600.0),
    Target("status", ("operator/sdxl_operator/status/finetune_status.py", "operator/sdxl_operator/status/deployment_status.py"),
           ("tests/sdxl_operator/status/test_op_finetune_status.py", "tests/sdxl_operator/status/test_dep_status.py",
            "tests/sdxl_operator/status/test_op_status_message.py"), 300.0),
    Target("server-core", ("workloads/sdxl_workloads/server/batcher.py", "workloads/sdxl_workloads/server/model.py"),
           ("tests/sdxl_workloads/server/test_serve_batcher.py", "tests/sdxl_workloads/server/test_serve_api.py",
            "tests/sdxl_workloads/server/test_serve_overload.py"), 600.0),
)


def config_text(target: Target, python: str) -> str:
    tests = " ".join(target.tests)
    modules = ", ".join(json.dumps(m) for m in target.modules)
    # -x: the first failing test kills the mutant; no cache: mutants must not share pytest state.
    command = f"{python} -m pytest -x -q -p no:cacheprovider -p no:randomly {tests}"
    return (
        "[cosmic-ray]\n"
        f"module-path = [{modules}]\n"
        f"timeout = {target.timeout}\n"
        "excluded-modules = []\n"
        f"test-command = {json.dumps(command)}\n\n"
        "[cosmic-ray.distributor]\n"
        'name = "local"\n'
    )


def annotation_spans(path: Path) -> list[tuple[tuple[int, int], tuple[int, int]]]:
    """Where `path` has type annotations: ((line, col), (end line, end col)), 1-based lines."""
    spans = []
    for node in ast.walk(ast.parse(path.read_text())):
        annotations = []
        if isinstance(node, ast.arg | ast.AnnAssign) and node.annotation is not None:
            annotations.append(node.annotation)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.returns is not None:
            annotations.append(node.returns)
        for ann in annotations:
            spans.append(((ann.lineno, ann.col_offset), (ann.end_lineno or ann.lineno, ann.end_col_offset or 0)))
    return spans


def drop_annotation_mutants(session: Path, tree: Path) -> int:
    """Remove mutants inside type annotations: with `from __future__ import annotations` they are
    never evaluated, so no test can kill them (equivalent mutants). Returns how many were removed."""
    spans: dict[str, list[tuple[tuple[int, int], tuple[int, int]]]] = {}
    doomed = []
    with sqlite3.connect(session) as db:
        for job, module, row, col in db.execute(
                "SELECT job_id, module_path, start_pos_row, start_pos_col FROM mutation_specs"):
            if module not in spans:
                spans[module] = annotation_spans(tree / module)
            if any(start <= (row, col) < end for start, end in spans[module]):
                doomed.append(job)
        for table in ("mutation_specs", "work_items"):
            db.executemany(f"DELETE FROM {table} WHERE job_id = ?", [(job,) for job in doomed])
    return len(doomed)


def sample_work(session: Path, keep: int, seed: int) -> int:
    """Keep `keep` randomly chosen mutants of an initialised session; returns how many there were."""
    with sqlite3.connect(session) as db:
        # Ordered by what the mutant is (job ids are random per session), so a seed picks the same mutants.
        ids = [row[0] for row in db.execute(
            "SELECT job_id FROM mutation_specs ORDER BY module_path, start_pos_row, start_pos_col, operator_name, "
            "operator_args, occurrence")]
        if keep >= len(ids):
            return len(ids)
        dropped = set(ids) - set(random.Random(seed).sample(ids, keep))
        for table in ("mutation_specs", "work_items"):
            db.executemany(f"DELETE FROM {table} WHERE job_id = ?", [(job,) for job in dropped])
    return len(ids)


def outcomes(session: Path, cosmic_ray: str, cwd: Path) -> list[dict[str, Any]]:
    dump = subprocess.run([cosmic_ray, "dump", str(session)], cwd=cwd, capture_output=True, text=True, check=True)
    return [json.loads(line) for line in dump.stdout.splitlines() if line.strip()]


def run_target(target: Target, tree: Path, args: argparse.Namespace) -> dict[str, Any]:
    cosmic_ray = str(Path(sys.executable).with_name("cosmic-ray"))
    work = tree / ".mutation" / target.name
    work.mkdir(parents=True, exist_ok=True)
    config, session = work / "config.toml", work / "session.sqlite"
    config.write_text(config_text(target, sys.executable))
    env = {**os.environ, "PYTHONPATH": f"{tree / 'workloads'}{os.pathsep}{tree / 'operator'}",
           "OMP_NUM_THREADS": "1"}
    started = time.monotonic()
    subprocess.run([cosmic_ray, "init", str(config), str(session)], cwd=tree, env=env, check=True)
    equivalent = drop_annotation_mutants(session, tree)
    total = sample_work(session, args.sample, args.seed)
    subprocess.run([cosmic_ray, "exec", str(config), str(session)], cwd=tree, env=env, check=True)
    counts = {"killed": 0, "survived": 0, "incompetent": 0, "other": 0}
    survivors = []
    for item in outcomes(session, cosmic_ray, tree):
        work_item, result = item[0], item[1]
        outcome = (result or {}).get("test_outcome") or "other"
        counts[outcome if outcome in counts else "other"] += 1
        if outcome == "survived":
            survivors.append({"mutations": work_item.get("mutations"), "diff": (result or {}).get("diff")})
    scored = counts["killed"] + counts["survived"]
    return {
        "modules": list(target.modules), "tests": list(target.tests), "mutantsInModules": total,
        "annotationMutantsDropped": equivalent,
        **counts, "score": round(counts["killed"] / scored, 3) if scored else None,
        "seconds": round(time.monotonic() - started), "survivors": survivors,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--targets", default=",".join(t.name for t in TARGETS),
                        help=f"comma-separated, of: {', '.join(t.name for t in TARGETS)}")
    parser.add_argument("--sample", type=int, default=10**9, help="test this many random mutants per target (default: all)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON)
    args = parser.parse_args(argv)
    if shutil.which("cosmic-ray", path=str(Path(sys.executable).parent)) is None:
        print("mutation: cosmic-ray is not installed in this Python; run `make setup`", file=sys.stderr)
        return 2
    chosen = [t for t in TARGETS if t.name in args.targets.split(",")]
    unknown = set(args.targets.split(",")) - {t.name for t in TARGETS}
    if unknown:
        parser.error(f"unknown target(s): {', '.join(sorted(unknown))}")
    report: dict[str, Any] = {"sample": args.sample, "seed": args.seed, "targets": {}}
    with tempfile.TemporaryDirectory(prefix="sdxl-mutation-") as scratch:
        tree = Path(scratch) / "tree"
        shutil.copytree(REPO_ROOT, tree, ignore=COPY_IGNORE, symlinks=True)
        for target in chosen:
            print(f"mutation: {target.name} ...", flush=True)
            report["targets"][target.name] = run_target(target, tree, args)
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\n{'target':16} {'mutants':>8} {'killed':>7} {'survived':>9} {'score':>6}")
    for name, result in report["targets"].items():
        tested = result["killed"] + result["survived"] + result["incompetent"] + result["other"]
        print(f"{name:16} {tested:>8} {result['killed']:>7} {result['survived']:>9} {result['score']!s:>6}")
    print(f"results and surviving mutants: {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
