"""`python -m sdxl_workloads.train.trainer_demo`: the trainer alone, end to end on the embedded model.

No operator and no Kubernetes (for the whole product on one machine, run `make demo`, the sandbox).
Fine-tunes `builtin:tiny` on `builtin:sample-subject` with the real `sdxl-workload train` command,
then generates the same prompts with the base model and with the new LoRA (loaded the public way,
`pipe.load_lora_weights`) and saves them side by side under demo-output/. No GPU, no network.
The tiny model has random weights (its VAE cannot even reproduce a photo), so its pictures are
abstract noise with or without the LoRA. What shows the learning is the number printed at the
end: the denoising error on the subject photos, with fixed noise, falls sharply with the LoRA.
"""

from __future__ import annotations

import argparse
import io
import json
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

DEFAULT_OUT = Path("demo-output")
PROMPTS = ("a photo of sks person", "a photo of sks person on the beach", "a photo of a person")
# The built-in model is small enough that one thread is fastest: more threads only wait on
# each other (and on everything else running on a small machine).
THREADS = 1


def demo_spec(steps: int, resolution: int) -> dict[str, Any]:
    return {
        "baseModel": "builtin:tiny",
        "instanceImages": "builtin:sample-subject",
        "instancePrompt": PROMPTS[0],
        "training": {
            "maxSteps": steps,
            "learningRate": 5e-3,
            "rank": 8,
            "alpha": 8,
            "batchSize": 2,
            "resolution": resolution,
            # The tiny model's random attention layers alone learn little in a few hundred steps;
            # LoRA on the UNet's input and output convolutions as well makes the effect visible.
            "targetModules": ["to_q", "to_k", "to_v", "to_out.0", "conv_in", "conv_out"],
            "mixedPrecision": "no",
            "gradientCheckpointing": False,
            "checkpointEvery": max(1, steps // 2),
        },
        "validation": {"prompts": list(PROMPTS[:2]), "numInferenceSteps": 20},
        "resources": {"gpus": 0, "cpu": "2"},
    }


class ProgressPrinter(io.TextIOBase):
    """Stands in for stdout during training and turns the protocol's JSON lines into sentences."""

    def __init__(self, out: Any) -> None:
        self.out = out
        self.pending = ""
        self.result: dict[str, Any] | None = None

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        self.pending += text
        while "\n" in self.pending:
            line, self.pending = self.pending.split("\n", 1)
            self.show(line)
        return len(text)

    def show(self, line: str) -> None:
        try:
            event = json.loads(line)
        except ValueError:
            print(line, file=self.out)
            return
        kind = event.get("event")
        if kind == "progress":
            print(f"  step {event['step']:>4}/{event['totalSteps']}  loss {event.get('loss', float('nan')):.4f}"
                  f"  about {event.get('etaSeconds', 0)} s left", file=self.out)
        elif kind == "checkpoint":
            print(f"  checkpoint saved: {event['uri']}", file=self.out)
        elif kind == "validation":
            print(f"  validation grid: {', '.join(event['images'])}", file=self.out)
        elif kind == "log":
            print(f"  {event['message']}", file=self.out)
        elif kind == "result":
            self.result = event
        self.out.flush()


def train(out: Path, steps: int, resolution: int) -> dict[str, Any]:
    from sdxl_workloads import cli

    spec_file = out / "finetune-spec.yaml"
    spec_file.write_text(yaml.safe_dump(demo_spec(steps, resolution), sort_keys=False))
    run_dir = out / "finetune"
    # A fresh run each time: leftover checkpoints of an earlier demo would only confuse.
    shutil.rmtree(run_dir, ignore_errors=True)
    print(f"training: sdxl-workload train --spec {spec_file} --output {run_dir}", flush=True)
    printer = ProgressPrinter(sys.stdout)
    real_stdout = sys.stdout
    sys.stdout = printer
    try:
        code = cli.main(["train", "--spec", str(spec_file), "--output", str(run_dir),
                         "--termination-log", str(out / "finetune-result.json")])
    finally:
        sys.stdout = real_stdout
    if code != 0 or printer.result is None or printer.result.get("status") != "Succeeded":
        raise SystemExit(f"training failed (exit code {code}); see {out / 'finetune-result.json'}")
    return printer.result


def subject_denoising_error(pipe: Any, resolution: int) -> float:
    """The UNet's noise-prediction error on the subject photos at fixed noise and timesteps."""
    import torch
    from diffusers import DDPMScheduler

    from sdxl_workloads import random_draws
    from sdxl_workloads.builtin.sample_images import ensure_sample_images
    from sdxl_workloads.train.embedding_cache import cache_latents, encode_prompts
    from sdxl_workloads.train.instance_data import load_instance_data
    from sdxl_workloads.train.training_data import pixels_from_images
    from sdxl_workloads.train.training_loop import denoising_loss

    examples = load_instance_data(ensure_sample_images(), PROMPTS[0], resolution).examples
    scheduler = DDPMScheduler.from_config(pipe.scheduler.config)
    with torch.no_grad():
        latents = torch.stack([d.mean for d in cache_latents(
            pipe.vae, pixels_from_images([e.image for e in examples]), "cpu")])
        noise = random_draws.randn(latents.shape, generator=random_draws.training_generator("cpu", 1234),
                                   device="cpu")
        timesteps = torch.linspace(50, 950, len(latents)).long()
        embeds, pooled = encode_prompts([pipe.text_encoder, pipe.text_encoder_2], [pipe.tokenizer, pipe.tokenizer_2],
                                        [PROMPTS[0]] * len(latents))
        time_ids = torch.tensor([list(e.time_ids()) for e in examples], dtype=torch.float32)
        return float(denoising_loss(pipe.unet, scheduler, latents, noise, timesteps, embeds, pooled, time_ids).mean())


def compare(out: Path, lora_dir: Path, resolution: int, steps: int = 25) -> tuple[list[Path], float, float]:
    """The same prompts and seeds with and without the LoRA, saved one by one and as one grid."""
    from diffusers import StableDiffusionXLPipeline
    from PIL import Image, ImageDraw

    from sdxl_workloads import random_draws
    from sdxl_workloads.models.references import resolve_model

    model = resolve_model("builtin:tiny")
    base = StableDiffusionXLPipeline.from_pretrained(model)
    tuned = StableDiffusionXLPipeline.from_pretrained(model)
    tuned.load_lora_weights(str(lora_dir))
    images_dir = out / "images"
    images_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    rows: list[tuple[str, Image.Image, Image.Image]] = []
    for index, prompt in enumerate(PROMPTS):
        pair = []
        for label, pipe in (("base", base), ("lora", tuned)):
            pipe.set_progress_bar_config(disable=True)
            image = pipe(prompt, height=resolution, width=resolution, num_inference_steps=steps,
                         generator=random_draws.pipeline_generator(index)).images[0]
            path = images_dir / f"{index}-{label}.png"
            image.save(path)
            written.append(path)
            pair.append(image)
        rows.append((prompt, pair[0], pair[1]))
    # A labelled, enlarged grid: prompts down the side, base | LoRA across.
    cell, label_width, header = 192, 300, 24
    grid = Image.new("RGB", (label_width + 2 * cell, header + len(rows) * cell), "white")
    draw = ImageDraw.Draw(grid)
    draw.text((label_width + 8, 6), "base model", fill="black")
    draw.text((label_width + cell + 8, 6), "with the new LoRA", fill="black")
    for row, (prompt, before, after) in enumerate(rows):
        top = header + row * cell
        draw.text((8, top + cell // 2), prompt, fill="black")
        grid.paste(before.resize((cell, cell), Image.Resampling.NEAREST), (label_width, top))
        grid.paste(after.resize((cell, cell), Image.Resampling.NEAREST), (label_width + cell, top))
    comparison = out / "comparison.png"
    grid.save(comparison)
    written.append(comparison)
    return written, subject_denoising_error(base, resolution), subject_denoising_error(tuned, resolution)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sdxl_workloads.train.trainer_demo", description=__doc__)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where to write (default demo-output/)")
    parser.add_argument("--steps", type=int, default=300, help="training steps (default 300)")
    parser.add_argument("--resolution", type=int, default=64, help="training and sampling size (default 64)")
    args = parser.parse_args(argv)

    import torch
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    torch.set_num_threads(THREADS)
    # Library chatter (loading bars, config notes) would bury the demo's own lines.
    diffusers_logging.set_verbosity_error()
    diffusers_logging.disable_progress_bar()
    transformers_logging.set_verbosity_error()
    transformers_logging.disable_progress_bar()
    started = time.monotonic()
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    print("trainer demo: DreamBooth-LoRA fine-tune of the embedded SDXL-architecture model on CPU\n")
    from sdxl_workloads.builtin.sample_images import ensure_sample_images
    from sdxl_workloads.models.references import resolve_model

    print(f"base model (builtin:tiny):              {resolve_model('builtin:tiny')}")
    print(f"subject photos (builtin:sample-subject): {ensure_sample_images()}\n", flush=True)
    result = train(out, args.steps, args.resolution)
    metrics = result["metrics"]
    print(f"\ntrained {metrics['steps']} steps at {metrics.get('stepsPerSecond', 0):.1f} steps/s, "
          f"final loss {metrics['finalLoss']:.4f}")
    for name, uri in result["artifacts"].items():
        print(f"  {name:<17} {uri}")
    print(f"  {'loraSha256':<17} {metrics['loraSha256']}\n")
    print("generating the same prompts with the base model and with the LoRA ...", flush=True)
    lora_dir = Path(result["artifacts"]["lora"]).parent
    written, base_error, lora_error = compare(out, lora_dir, args.resolution)
    for path in written:
        print(f"  {path}")
    print(f"\ndenoising error on the subject photos (fixed noise): base model {base_error:.3f}, "
          f"with the LoRA {lora_error:.3f} ({(lora_error / base_error - 1) * 100:+.0f}%)")
    print("(the tiny model's weights are random, so its images are abstract either way; with SDXL the same\n"
          " command gives photos of the subject)")
    print(f"\ndone in {time.monotonic() - started:.0f} s. Open {out / 'comparison.png'} to compare.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
