"""Does the fine-tune learn the subject? DreamBooth quality of `builtin:world` on `builtin:world-subject`.

Each recipe variant fine-tunes the embedded `builtin:world` model on the ten photos of
`builtin:world-subject` with `sdxl-workload train` (its own process, one torch thread), loads the
LoRA into the base pipeline and reads the generated images with world_quality.py:
- identity: "a photo of sks person <on the beach | in a forest | in a city | on the moon>"
  images that show the subject's look (a hair and shirt combination the base model never saw);
- prompt fidelity: the same images that show the setting asked for;
- class drift: how much more often "a photo of a person" shows the subject's look than before.

Variants: with and without prior preservation (class images the base model generates for "a photo
of a person") and with and without text-encoder LoRA, each over several seeds; the table gives
the median of the seeds. The recipe is the CRD's defaults (rank 4, alpha 4, AdamW, constant
schedule, Min-SNR 5, text-encoder learning rate 5e-6 ...) except what a CPU run needs: the
world's 64 px, fp32, no checkpoints, fewer class images than the default 100, and the demo's
steps, learning rate, batch and LoRA layers (crds/examples/finetune-world.yaml). `--steps`,
`--learning-rate`, `--rank`, `--target-modules` try the recipe's levers.

Goals: identity >= 0.8 with prompt fidelity >= 0.8, and prior preservation halving class drift.

Results: a table on stdout and JSON in bench/results/quality.json (or --json).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "crds" / "examples" / "finetune-world.yaml"
VARIANTS = {  # name -> (prior preservation, text-encoder training)
    "default": (False, False),
    "prior preservation": (True, False),
    "text encoder": (False, True),
    "prior preservation + text encoder": (True, True),
}
GOAL_IDENTITY = 0.8
GOAL_PROMPT_FIDELITY = 0.8


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=3, help="training seeds per variant (default 3)")
    parser.add_argument("--variants", nargs="*", choices=list(VARIANTS), default=list(VARIANTS))
    parser.add_argument("--steps", type=int, default=None, help="training steps (default: the example's)")
    parser.add_argument("--learning-rate", type=float, default=None, help="default: the example's")
    parser.add_argument("--rank", type=int, default=None, help="LoRA rank, alpha = rank (default: the example's)")
    parser.add_argument("--target-modules", nargs="+", default=None, metavar="NAME",
                        help="the UNet layers that get LoRA (default: the example's); e.g. to_q to_k to_v to_out.0, "
                             "the CRD's default, to compare")
    parser.add_argument("--class-images", type=int, default=20, help="prior-preservation class images (default 20)")
    parser.add_argument("--images-per-prompt", type=int, default=8, help="images per quality prompt (default 8)")
    parser.add_argument("--sampling-steps", type=int, default=10)
    parser.add_argument("--model", default="builtin:world",
                        help="the base model: builtin:world (default) or a folder, e.g. a new `sdxl-workload world-model` "
                             "build to judge before it ships")
    parser.add_argument("--json", type=Path, default=ROOT / "bench" / "results" / "quality.json")
    return parser.parse_args(argv)


def finetune_spec(args: argparse.Namespace, prior: bool, text_encoder: bool, seed: int) -> dict[str, Any]:
    """The example's spec with the variant's switches, the seed and any lever from the command line."""
    from sdxl_workloads.models.references import local_input, resolve_model

    spec: dict[str, Any] = yaml.safe_load(EXAMPLE.read_text())["spec"]
    # The trainer validates against the CRD, which names the builtin inputs; it gets their folders.
    spec["baseModel"] = resolve_model(args.model)
    spec["instanceImages"] = str(local_input(spec["instanceImages"]))
    training = spec["training"]
    training.update(seed=seed, trainTextEncoder=text_encoder, checkpointEvery=0)
    if args.steps is not None:
        training["maxSteps"] = args.steps
    if args.learning_rate is not None:
        training["learningRate"] = args.learning_rate
    if args.rank is not None:
        training.update(rank=args.rank, alpha=args.rank)
    if args.target_modules is not None:
        training["targetModules"] = list(args.target_modules)
    if prior:
        spec["classPrompt"] = "a photo of a person"
        spec["priorPreservation"] = {"enabled": True, "numClassImages": args.class_images}
    spec["validation"] = {"prompts": ["a photo of sks person"], "numInferenceSteps": 1}
    return spec


def train(spec: dict[str, Any], folder: Path) -> tuple[Path, float]:
    """`sdxl-workload train` in a child process on one thread; the LoRA folder and the seconds it took."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "spec.yaml").write_text(yaml.safe_dump(spec))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    began = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "sdxl_workloads.cli", "train", "--spec", str(folder / "spec.yaml"),
                             "--output", str(folder / "out"), "--termination-log", str(folder / "termination-log")],
                            capture_output=True, text=True, env=env, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"training failed ({result.returncode}): {result.stderr[-2000:]}")
    return folder / "out" / "lora", time.monotonic() - began


def quality(lora: Path | None, args: argparse.Namespace) -> dict[str, float]:
    import torch
    from diffusers import StableDiffusionXLPipeline

    from sdxl_workloads.builtin.world_quality import measure_world_quality
    from sdxl_workloads.models.references import resolve_model

    torch.set_num_threads(1)
    pipe = StableDiffusionXLPipeline.from_pretrained(resolve_model(args.model))
    pipe.set_progress_bar_config(disable=True)
    if lora is not None:
        pipe.load_lora_weights(str(lora))
    measured = measure_world_quality(pipe, images_per_prompt=args.images_per_prompt, steps=args.sampling_steps)
    return {"identity": measured.identity, "promptFidelity": measured.prompt_fidelity,
            "classSubjectShare": measured.class_subject_share}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    base = quality(None, args)
    print(f"base model: identity {base['identity']:.2f}, prompt fidelity {base['promptFidelity']:.2f}, "
          f"class images showing the subject {base['classSubjectShare']:.2f}", flush=True)
    results: dict[str, Any] = {"base": base, "variants": {}, "settings": vars(args) | {"json": str(args.json)}}
    with tempfile.TemporaryDirectory(prefix="quality-bench-") as work:
        for name in args.variants:
            prior, text_encoder = VARIANTS[name]
            runs = []
            for seed in range(args.seeds):
                spec = finetune_spec(args, prior, text_encoder, seed)
                lora, seconds = train(spec, Path(work) / f"{name.replace(' ', '-')}-{seed}")
                measured = quality(lora, args)
                measured["classDrift"] = measured["classSubjectShare"] - base["classSubjectShare"]
                measured["trainSeconds"] = seconds
                runs.append(measured)
                print(f"  {name}, seed {seed}: identity {measured['identity']:.2f}, prompt fidelity "
                      f"{measured['promptFidelity']:.2f}, class drift {measured['classDrift']:+.2f} "
                      f"({seconds:.0f} s training)", flush=True)
            median = {key: statistics.median(run[key] for run in runs)
                      for key in ("identity", "promptFidelity", "classDrift", "trainSeconds")}
            results["variants"][name] = {"median": median, "runs": runs, "training": spec["training"]}
    print()
    print(render_table(results))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2))
    print(f"\nwrote {args.json}")
    return 0


def render_table(results: dict[str, Any]) -> str:
    """A Markdown table of each variant's medians, with whether it meets the identity/fidelity goal."""
    lines = ["| variant | identity | prompt fidelity | class drift | goal (identity, fidelity >= 0.8) | training s |",
             "|---|---|---|---|---|---|"]
    base = results["base"]
    lines.append(f"| base model (no fine-tune) | {base['identity']:.2f} | {base['promptFidelity']:.2f} | - | - | - |")
    for name, variant in results["variants"].items():
        m = variant["median"]
        met = m["identity"] >= GOAL_IDENTITY and m["promptFidelity"] >= GOAL_PROMPT_FIDELITY
        lines.append(f"| {name} | {m['identity']:.2f} | {m['promptFidelity']:.2f} | {m['classDrift']:+.2f} | "
                     f"{'met' if met else 'not met'} | {m['trainSeconds']:.0f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
