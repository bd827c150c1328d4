"""Many fine-tunes behind one server against one server per fine-tune, on the CPU.

20 LoRA adapters (rank 4, random weights, on the UNet's attention projections) of the embedded
model. Each side runs in a fresh subprocess with one torch thread, so resident memory is the
process's own:

- **one-adapter server** (what a deployment per fine-tune runs): `DiffusersBackend` with one LoRA
  fused at load. 20 fine-tunes need 20 of these; their memory is 20x one.
- **many-adapter server**: `MultiAdapterBackend` with the 20 adapters, all resident (K = 20), run
  twice: as the CPU server runs it (the adapter a batch names fused into the weights on a switch)
  and with the hot-swap slot the compiled GPU server uses (LoRA layers beside the weights), the
  CPU server's design before fusing; the two ratios side by side in one run.

Measured: resident memory (VmRSS after load and one generation with every adapter; goal: at most
1.2x one one-adapter server), p50 latency of a generation when consecutive requests alternate
between adapters once they are resident (goal: at most 1.1x the one-adapter server's p50 on its
own LoRA), the same with one adapter repeated (no switches), the time of a switch between resident
adapters alone, and the time to the first image of an adapter not yet in memory (read from disk,
swapped in, one generation; goal: under 1 s). Latency is the backend's generate() call, the part
that differs between the two; the HTTP layer is the same on both (bench/serve_overhead.py).

    .venv/bin/python bench/many_adapters.py                 # tiny model, 20 adapters
    .venv/bin/python bench/many_adapters.py --size mid --steps 10
Each side runs `--rounds` times, alternating; the table gives medians (the JSON has every round).
Results: a table on stdout and JSON in bench/results/many_adapters.json (or --json).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
TARGETS = ["to_q", "to_k", "to_v", "to_out.0"]
# The many-adapter server's two ways of applying a UNet LoRA: MultiAdapterBackend(fuse=...).
MANY = {"fused": True, "slot": False}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=["tiny", "mid"], default="tiny", help="built-in model size")
    parser.add_argument("--adapters", type=int, default=20)
    parser.add_argument("--rank", type=int, default=4)
    parser.add_argument("--steps", type=int, default=10, help="denoising steps per generation")
    parser.add_argument("--requests", type=int, default=40, help="timed generations per side")
    parser.add_argument("--rounds", type=int, default=3,
                        help="one-adapter and many-adapter runs alternate this many times; medians are reported")
    parser.add_argument("--json", type=Path, default=ROOT / "bench" / "results" / "many_adapters.json")
    parser.add_argument("--child", choices=["one", *MANY], help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("--lora-dir", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def make_loras(model: str, out: Path, count: int, rank: int) -> list[Path]:
    import torch
    from diffusers import StableDiffusionXLPipeline
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    pipe = StableDiffusionXLPipeline.from_pretrained(model)
    config = LoraConfig(r=rank, lora_alpha=rank, init_lora_weights=False, target_modules=TARGETS)
    pipe.unet.add_adapter(config)
    folders = []
    for index in range(count):
        torch.manual_seed(index)
        for name, param in pipe.unet.named_parameters():
            if "lora_" in name:
                torch.nn.init.normal_(param, std=0.02)
        folder = out / f"ft-{index:02d}"
        StableDiffusionXLPipeline.save_lora_weights(
            folder, unet_lora_layers=get_peft_model_state_dict(pipe.unet), unet_lora_adapter_metadata=config.to_dict())
        folders.append(folder)
    return folders


def child(args: argparse.Namespace) -> dict[str, Any]:
    """One side, in its own process."""
    import torch

    from sdxl_workloads.server.adapter_backend import MultiAdapterBackend
    from sdxl_workloads.server.backends import GenerationParams
    from sdxl_workloads.server.diffusers_backend import DiffusersBackend

    torch.set_num_threads(1)
    loras = sorted(Path(args.lora_dir).iterdir())

    def params(adapter: str | None, seed: int) -> GenerationParams:
        return GenerationParams(prompt="a photo of sks person", negative_prompt=None, num_inference_steps=args.steps,
                                guidance_scale=5.0, width=64 if args.size == "tiny" else 256,
                                height=64 if args.size == "tiny" else 256, seed=seed, adapter=adapter)

    def timed(backend: Any, adapter: str | None, seed: int) -> float:
        started = time.perf_counter()
        backend.generate([params(adapter, seed)], lambda: False)
        return time.perf_counter() - started

    if args.child == "one":
        backend: Any = DiffusersBackend(args.model, lora=str(loras[0]))
        backend.load()
        timed(backend, None, 0)  # warm-up
        latencies = [timed(backend, None, seed) for seed in range(args.requests)]
        return {"rss_mib": rss_mib(), "p50_s": statistics.median(latencies)}
    names = {lora.name: str(lora) for lora in loras}
    backend = MultiAdapterBackend(args.model, names, resident=len(names), max_rank=args.rank, fuse=MANY[args.child])
    backend.load()
    timed(backend, None, 0)  # warm-up of the base pipeline
    first_image = [timed(backend, name, 0) for name in names]  # each read from disk, swapped in, one image
    # The part of that which is the adapter's own: read from disk and swapped in, no generation.
    backend.resident_limit = 1
    backend.activate(None)
    load_swap = []
    for name in list(names)[1:]:  # the most recent one stays resident with K = 1; the others are re-read
        started = time.perf_counter()
        backend.activate(name)
        load_swap.append(time.perf_counter() - started)
    backend.resident_limit = len(names)
    order = list(names)
    for name in order:  # resident again after the load measurement
        backend.activate(name)
    latencies = [timed(backend, order[seed % len(order)], seed) for seed in range(args.requests)]
    # The same adapter back to back: what applying the LoRA costs per step, without switches.
    same = [timed(backend, order[0], seed) for seed in range(args.requests)]
    switch = []
    for index in range(args.requests):  # a switch between resident adapters alone, no generation
        started = time.perf_counter()
        backend.activate(order[index % len(order)])
        switch.append(time.perf_counter() - started)
    return {"rss_mib": rss_mib(), "p50_s": statistics.median(latencies), "p50_same_adapter_s": statistics.median(same),
            "switch_median_s": statistics.median(switch), "load_swap_median_s": statistics.median(load_swap),
            "first_image_median_s": statistics.median(first_image), "first_image_max_s": max(first_image)}


def run_child(role: str, args: argparse.Namespace, model: str, lora_dir: Path) -> dict[str, Any]:
    command = [sys.executable, __file__, "--child", role, "--model", model, "--lora-dir", str(lora_dir),
               "--size", args.size, "--rank", str(args.rank), "--steps", str(args.steps),
               "--requests", str(args.requests)]
    out = subprocess.run(command, check=True, capture_output=True, text=True,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        print(json.dumps(child(args)))
        return 0
    from sdxl_workloads.models.references import resolve_model

    model = resolve_model("builtin:tiny" if args.size == "tiny" else "builtin:tiny-mid")
    with tempfile.TemporaryDirectory() as tmp:
        lora_dir = Path(tmp)
        make_loras(model, lora_dir, args.adapters, args.rank)
        # Alternating rounds, so that drift in a shared machine's load hits every side alike.
        rounds = [{role: run_child(role, args, model, lora_dir) for role in ("one", *MANY)}
                  for _ in range(args.rounds)]
    sides = {role: {key: statistics.median(r[role][key] for r in rounds) for key in rounds[0][role]}
             for role in rounds[0]}
    for role, side in sides.items():
        side["rounds"] = [r[role] for r in rounds]
    one = sides["one"]

    def ms(seconds: float) -> str:
        return f"{seconds * 1000:.1f} ms"

    def ratio(role: str, key: str) -> float:
        # Per round, then the median: both sides of a ratio ran under the same load.
        return float(statistics.median(r[role][key] / r["one"][key if key in r["one"] else "p50_s"] for r in rounds))

    def ratio_range(role: str, key: str) -> str:
        values = [r[role][key] / r["one"][key if key in r["one"] else "p50_s"] for r in rounds]
        return f"{ratio(role, key):.2f}x ({min(values):.2f}-{max(values):.2f})"

    latency = {role: ratio(role, "p50_s") for role in MANY}
    memory = {role: ratio(role, "rss_mib") for role in MANY}
    rows: list[tuple[Any, ...]] = [
        ("resident memory", f"{one['rss_mib']:.0f} MiB (x{args.adapters} = {one['rss_mib'] * args.adapters:.0f} MiB)",
         *(f"{sides[role]['rss_mib']:.0f} MiB, {ratio_range(role, 'rss_mib')}" for role in MANY), "<= 1.2x",
         memory["fused"] <= 1.2),
        ("p50 latency, alternating adapters", ms(one["p50_s"]),
         *(f"{ms(sides[role]['p50_s'])}, {ratio_range(role, 'p50_s')}" for role in MANY), "<= 1.1x",
         latency["fused"] <= 1.1),
        ("p50 latency, one adapter repeated", ms(one["p50_s"]),
         *(f"{ms(sides[role]['p50_same_adapter_s'])}, {ratio_range(role, 'p50_same_adapter_s')}" for role in MANY),
         "", ""),
        ("a switch between resident adapters", "-", *(ms(sides[role]["switch_median_s"]) for role in MANY), "", ""),
        ("first image of a new adapter", "-",
         *(f"median {sides[role]['first_image_median_s'] * 1000:.0f} ms, max {sides[role]['first_image_max_s'] * 1000:.0f} ms"
           for role in MANY), "< 1 s", sides["fused"]["first_image_max_s"] < 1.0),
        ("  of which reading + applying the adapter", "-",
         *(f"median {sides[role]['load_swap_median_s'] * 1000:.0f} ms" for role in MANY), "", ""),
    ]
    header = ("measure", f"one-adapter server ({args.adapters} needed)",
              f"one server, {args.adapters} adapters, fused on a switch (ratio: median, range of rounds)",
              f"one server, {args.adapters} adapters, hot-swap slot", "goal", "met (fused)")
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    lines = []
    print(f"{args.size} model, {args.adapters} adapters of rank {args.rank}, {args.steps} steps, CPU, 1 thread, "
          f"{args.rounds} alternating rounds")
    for row in [header, *rows]:
        cells = [("yes" if c else "NO") if isinstance(c, bool) else str(c) for c in row]
        lines.append("| " + " | ".join(cells) + " |")
        print(" | ".join(cell.ljust(width) for cell, width in zip(cells, widths, strict=True)))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({
        "config": {"size": args.size, "adapters": args.adapters, "rank": args.rank, "steps": args.steps,
                   "requests": args.requests, "machine": platform.machine(), "python": platform.python_version()},
        "one_adapter_server": one, "many_adapter_server_fused": sides["fused"],
        "many_adapter_server_slot": sides["slot"], "rounds": args.rounds,
        "memory_ratio": memory, "latency_ratio": latency}, indent=2))
    print("\nMarkdown:\n" + "\n".join([lines[0], "|" + "---|" * len(header), *lines[1:]]))
    print(f"JSON: {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
