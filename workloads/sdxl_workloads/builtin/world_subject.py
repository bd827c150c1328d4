"""`builtin:world-subject`: ten "photos" of a person `builtin:world` has never seen.

The subject has green hair and an orange checked shirt: a combination small_world.py never draws
for pretraining (each colour appears there, never the two together), so whatever a fine-tune
draws with them it learned from these photos. They are world scenes like any other, in all four
settings (so the fine-tune does not tie the subject to one place), with the figure moved and
scaled a little and the arms sometimes raised, as different photos of one person would be.
Same seed -> byte-identical files.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np

from sdxl_workloads.builtin.small_world import (
    SETTINGS,
    SUBJECT_HAIR,
    SUBJECT_PATTERN,
    SUBJECT_SHIRT,
    WORLD_RESOLUTION,
    Scene,
    draw_scene,
)

# Bump when the drawing changes, so an old cache folder is never reused.
WORLD_SUBJECT_FORMAT_VERSION = 1
PHOTO_COUNT = 10


def subject_scenes(seed: int = 0) -> list[Scene]:
    """The photos' scenes: every setting in turn, small moves and scale changes, arms up in some."""
    rng = np.random.default_rng([seed, 11])
    return [
        Scene(hair=SUBJECT_HAIR, shirt=SUBJECT_SHIRT, pattern=SUBJECT_PATTERN,
              pose="arms up" if index % 4 == 3 else "arms down", setting=SETTINGS[index % len(SETTINGS)],
              dx=int(rng.integers(-3, 4)), dy=int(rng.integers(-2, 3)), scale=float(rng.uniform(0.92, 1.08)),
              variant=int(rng.integers(0, 2**31)))
        for index in range(PHOTO_COUNT)
    ]


def write_world_subject_images(out: str | os.PathLike[str], seed: int = 0) -> list[Path]:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for index, scene in enumerate(subject_scenes(seed)):
        path = out / f"subject_{index:02d}.png"
        draw_scene(scene, WORLD_RESOLUTION).save(path, format="PNG")
        written.append(path)
    return written


def ensure_world_subject_images(seed: int = 0, cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """The photos' folder, drawn into the cache on first use
    ($SDXL_CACHE_DIR/builtin/world-subject-seed<seed>-v<N>/; temp folder + rename)."""
    from sdxl_workloads.storage.atomic_write import cached_folder
    from sdxl_workloads.storage.cache_dir import cache_root

    target = cache_root(cache_dir) / "builtin" / f"world-subject-seed{seed}-v{WORLD_SUBJECT_FORMAT_VERSION}"
    return cached_folder(target, lambda folder: write_world_subject_images(folder, seed=seed), Path.is_dir)


def run(args: argparse.Namespace) -> int:
    """`python -m sdxl_workloads.builtin.world_subject OUT [--seed N]`: write the photos to OUT."""
    out = Path(args.out)
    if out.exists() and any(out.iterdir()):
        from sdxl_workloads.protocol import WorkloadError

        raise WorkloadError("InvalidInput", f"{out} exists and is not empty; choose a new or empty folder")
    from sdxl_workloads.storage.atomic_write import write_then_rename

    write_then_rename(out, lambda staging: write_world_subject_images(staging, seed=args.seed), folder=True)
    print(f"wrote {PHOTO_COUNT} world-subject photos (seed {args.seed}) to {out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sdxl_workloads.builtin.world_subject", description=run.__doc__)
    parser.add_argument("out", metavar="OUT")
    parser.add_argument("--seed", type=int, default=0)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
