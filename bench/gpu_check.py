"""GPU readiness in one command: full-size SDXL, trained, prepared and served on this machine's GPU.

    make gpu-check            # or: .venv/bin/python bench/gpu_check.py [--steps 30] [--work-dir DIR]

There is no model hub here, so the model is SDXL 1.0's architecture with random weights, built from
configs written below (the published stabilityai/stable-diffusion-xl-base-1.0 values: a 2.6 B
parameter UNet, CLIP ViT-L and OpenCLIP bigG text encoders, the 4-level VAE) and saved in diffusers
layout. Random weights cost what real ones cost: the numbers are SDXL's.

1. Train: `sdxl-workload train` at 1024 px, bf16, gradient checkpointing, rank 4 on the UNet's
   attention, `--steps` optimizer steps of one sample each. Reports steady-state s/step (steps
   after the first, timed by the parent as progress lines arrive, and the trainer's own
   `stepsPerSecond`) and peak GPU memory (the process's `torch.cuda.max_memory_allocated()` at
   exit) against a 24 GB budget (an A10G, the smallest GPU the product targets for training).
2. Prepare: `sdxl-workload compile` with `accelerator: nvidia` fuses the trained LoRA and saves
   the fp16 pipeline the GPU server loads.
3. Serve: the GPU server's backend loads it and generates at 1024 px, 30 steps, guidance 5, batch
   1 and 4 (after a warm-up call); reports images/s and peak memory.
4. Side by side: with `--reference-script` (diffusers' train_dreambooth_lora_sdxl.py) and
   `--reference-python`, runs bench/train_vs_reference.py --full-sdxl on the same configs.

Results are printed as a table and written to bench/results/gpu_check.json. Without CUDA the
script says so and exits with status 2 before building anything.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_JSON = REPO_ROOT / "bench" / "results" / "gpu_check.json"
GPU_BUDGET_BYTES = 24 * 1024**3  # A10G / L4: the training pod's smallest target
NO_CUDA_EXIT = 2
PROMPT = "a photo of sks person"

# ---------------------------------------------------------------------------------------------
# SDXL 1.0 base, as published (unet/config.json, vae/config.json, text_encoder{,_2}/config.json)

SDXL_UNET: dict[str, Any] = {
    "sample_size": 128, "in_channels": 4, "out_channels": 4, "center_input_sample": False,
    "flip_sin_to_cos": True, "freq_shift": 0,
    "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
    "mid_block_type": "UNetMidBlock2DCrossAttn",
    "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
    "block_out_channels": [320, 640, 1280], "layers_per_block": 2, "downsample_padding": 1,
    "mid_block_scale_factor": 1, "act_fn": "silu", "norm_num_groups": 32, "norm_eps": 1e-5,
    "cross_attention_dim": 2048, "transformer_layers_per_block": [1, 2, 10],
    "attention_head_dim": [5, 10, 20], "use_linear_projection": True,
    "addition_embed_type": "text_time", "addition_time_embed_dim": 256,
    "projection_class_embeddings_input_dim": 2816,
}
SDXL_VAE: dict[str, Any] = {
    "in_channels": 3, "out_channels": 3, "latent_channels": 4,
    "down_block_types": ["DownEncoderBlock2D"] * 4, "up_block_types": ["UpDecoderBlock2D"] * 4,
    "block_out_channels": [128, 256, 512, 512], "layers_per_block": 2, "act_fn": "silu",
    "norm_num_groups": 32, "sample_size": 1024, "scaling_factor": 0.13025, "force_upcast": True,
}
# CLIP ViT-L/14 text tower (text_encoder) and OpenCLIP ViT-bigG/14 (text_encoder_2).
SDXL_TEXT_ENCODER: dict[str, Any] = {
    "vocab_size": 49408, "hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12,
    "num_attention_heads": 12, "max_position_embeddings": 77, "hidden_act": "quick_gelu",
    "projection_dim": 768, "layer_norm_eps": 1e-5,
}
SDXL_TEXT_ENCODER_2: dict[str, Any] = {
    "vocab_size": 49408, "hidden_size": 1280, "intermediate_size": 5120, "num_hidden_layers": 32,
    "num_attention_heads": 20, "max_position_embeddings": 77, "hidden_act": "gelu",
    "projection_dim": 1280, "layer_norm_eps": 1e-5,
}


def check_sdxl_configs() -> None:
    """The architecture's own consistency rules (what SDXL's UNet requires of its conditioning)."""
    unet = SDXL_UNET
    hidden = SDXL_TEXT_ENCODER["hidden_size"] + SDXL_TEXT_ENCODER_2["hidden_size"]
    if unet["cross_attention_dim"] != hidden:
        raise ValueError(f"cross_attention_dim {unet['cross_attention_dim']} != text hidden sizes {hidden}")
    pooled = 6 * unet["addition_time_embed_dim"] + SDXL_TEXT_ENCODER_2["projection_dim"]
    if unet["projection_class_embeddings_input_dim"] != pooled:
        raise ValueError(f"projection_class_embeddings_input_dim != 6 x time embed + pooled ({pooled})")


def text_encoder_config(values: dict[str, Any], tokenizer: Any) -> Any:
    from transformers import CLIPTextConfig

    from sdxl_workloads.builtin.tiny_model import END_TOKEN, START_TOKEN

    bos, eos = tokenizer.convert_tokens_to_ids(START_TOKEN), tokenizer.convert_tokens_to_ids(END_TOKEN)
    # CLIP pools at the end-of-text token: the ids must be the (local) tokenizer's.
    return CLIPTextConfig(**values, bos_token_id=bos, eos_token_id=eos, pad_token_id=eos)


def build_full_sdxl(out: Path, device: str = "cuda") -> Path:
    """SDXL 1.0's architecture with seeded random weights, saved in diffusers layout (bf16 UNet and
    text encoders, fp32 VAE), built on `device` (the GPU builds it in seconds, the CPU in minutes)."""
    import torch
    from diffusers import (
        AutoencoderKL,
        EulerDiscreteScheduler,
        StableDiffusionXLPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    from sdxl_workloads.builtin.tiny_model import SDXL_SCHEDULER_CONFIG, build_tokenizer

    if (out / "model_index.json").is_file():
        return out
    check_sdxl_configs()
    tokenizer = build_tokenizer()
    staging = out.with_name(out.name + ".partial")
    torch.manual_seed(0)
    with torch.device(device):
        unet = UNet2DConditionModel(**SDXL_UNET).to(torch.bfloat16)
        vae = AutoencoderKL(**SDXL_VAE)
        text_encoder = CLIPTextModel(text_encoder_config(SDXL_TEXT_ENCODER, tokenizer)).to(torch.bfloat16)
        text_encoder_2 = CLIPTextModelWithProjection(
            text_encoder_config(SDXL_TEXT_ENCODER_2, tokenizer)).to(torch.bfloat16)
    pipe = StableDiffusionXLPipeline(
        vae=vae, text_encoder=text_encoder, text_encoder_2=text_encoder_2, tokenizer=tokenizer,
        tokenizer_2=tokenizer, unet=unet, scheduler=EulerDiscreteScheduler.from_config(SDXL_SCHEDULER_CONFIG),
        force_zeros_for_empty_prompt=True, add_watermarker=False,
    )
    pipe.to("cpu").save_pretrained(str(staging), safe_serialization=True)
    staging.rename(out)
    return out


# ---------------------------------------------------------------------------------------------
# Workload runs

# Runs a console command in-process and reports the process's peak GPU memory at exit.
_PEAK_LAUNCHER = (
    "import atexit, json, runpy, sys, torch\n"
    "atexit.register(lambda: print(json.dumps({'event': 'gpu-peak', "
    "'allocated': torch.cuda.max_memory_allocated(), 'reserved': torch.cuda.max_memory_reserved()}), flush=True))\n"
    "sys.argv = ['sdxl-workload', *sys.argv[1:]]\n"
    "runpy.run_module('sdxl_workloads', run_name='__main__')\n"
)


def train_spec(model_dir: Path, steps: int, resolution: int) -> dict[str, Any]:
    """The trainer's defaults at full size, without the hub: bf16, gradient checkpointing, Min-SNR 5,
    rank 4 on the UNet attention; one sample per step so s/step is per sample."""
    return {
        "apiVersion": "sdxl.io/v1alpha1", "kind": "SDXLFineTune", "metadata": {"name": "gpu-check"},
        "spec": {
            "baseModel": str(model_dir), "instanceImages": "builtin:sample-subject", "instancePrompt": PROMPT,
            "training": {"maxSteps": steps, "resolution": resolution, "mixedPrecision": "bf16",
                         "gradientCheckpointing": True, "gradientAccumulation": 1, "checkpointEvery": 0},
            "validation": {"numInferenceSteps": 1},
            "resources": {"gpus": 1},
        },
    }


def run_workload(args: list[str], log: Path) -> tuple[int, list[tuple[float, dict[str, Any]]]]:
    """Run `sdxl-workload ARGS` under the peak launcher; (exit code, [(arrival time, event)])."""
    events: list[tuple[float, dict[str, Any]]] = []
    with log.open("w") as log_file:
        process = subprocess.Popen([sys.executable, "-c", _PEAK_LAUNCHER, *args], stdout=subprocess.PIPE,
                                   stderr=log_file, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        assert process.stdout is not None
        for line in process.stdout:
            log_file.write(line)
            if line.startswith("{"):
                with contextlib.suppress(json.JSONDecodeError):
                    events.append((time.monotonic(), json.loads(line)))
        code = process.wait()
    return code, events


def steady_seconds_per_step(events: list[tuple[float, dict[str, Any]]], warmup: int = 1) -> float | None:
    """(t_last - t_first) / (steps between) over progress lines after the warm-up step(s)."""
    points = [(t, e["step"]) for t, e in events if e.get("event") == "progress" and e["step"] > warmup]
    if len(points) < 2 or points[-1][1] == points[0][1]:
        return None
    return (points[-1][0] - points[0][0]) / (points[-1][1] - points[0][1])


def peak_of(events: list[tuple[float, dict[str, Any]]]) -> dict[str, int]:
    peaks = [e for _, e in events if e.get("event") == "gpu-peak"]
    return {"allocated": peaks[-1]["allocated"], "reserved": peaks[-1]["reserved"]} if peaks else {}


def result_of(events: list[tuple[float, dict[str, Any]]]) -> dict[str, Any]:
    results = [e for _, e in events if e.get("event") == "result"]
    return results[-1] if results else {}


def serve_throughput(prepared: Path, resolution: int, steps: int, batch_sizes: list[int]) -> dict[str, Any]:
    """images/s of the GPU server's backend (in this process) at each batch size, after a warm-up."""
    import torch

    from sdxl_workloads.server.backends import GenerationParams
    from sdxl_workloads.server.diffusers_backend import DiffusersBackend

    backend = DiffusersBackend(str(prepared), device="cuda")
    started = time.monotonic()
    backend.load()
    load_seconds = time.monotonic() - started
    figures: dict[str, Any] = {"loadSeconds": round(load_seconds, 1)}

    def params(seed: int) -> GenerationParams:
        return GenerationParams(prompt=PROMPT, negative_prompt=None, num_inference_steps=steps, guidance_scale=5.0,
                                width=resolution, height=resolution, seed=seed)

    backend.generate([params(0)], lambda: False)  # warm-up: kernels, allocator, lazy loads
    for size in batch_sizes:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        started = time.monotonic()
        batches = backend.generate([params(seed) for seed in range(size)], lambda: False)
        torch.cuda.synchronize()
        seconds = time.monotonic() - started
        images = sum(len(batch) for batch in batches)
        figures[f"batch{size}"] = {"images": images, "seconds": round(seconds, 2),
                                   "imagesPerSecond": round(images / seconds, 3),
                                   "peakAllocatedGiB": round(torch.cuda.max_memory_allocated() / 1024**3, 2)}
    return figures


# ---------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=30, help="training steps (default 30)")
    parser.add_argument("--resolution", type=int, default=1024)
    parser.add_argument("--serve-steps", type=int, default=30, help="denoising steps per image (default 30)")
    parser.add_argument("--batch-sizes", default="1,4", help="serving batch sizes (default 1,4)")
    parser.add_argument("--work-dir", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "sdxl-gpu-check")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON)
    parser.add_argument("--reference-script", type=Path, default=os.environ.get("SDXL_REFERENCE_SCRIPT"),
                        help="diffusers' train_dreambooth_lora_sdxl.py, to run side by side")
    parser.add_argument("--reference-python", type=Path, default=os.environ.get("SDXL_REFERENCE_PYTHON"),
                        help="a Python that runs the reference script (needs torchvision)")
    return parser.parse_args(argv)


def cuda_problem() -> str | None:
    """Why this machine cannot run the check, or None."""
    try:
        import torch
    except ImportError:
        return "torch is not installed in this Python; run `make setup` first"
    if not torch.cuda.is_available():
        return (f"no CUDA device is visible to torch {torch.__version__} (CUDA build: {torch.version.cuda}); "
                "gpu-check needs a machine with an NVIDIA GPU and its driver")
    return None


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    problem = cuda_problem()
    if problem:
        print(f"gpu-check: not run: {problem}", file=sys.stderr)
        return NO_CUDA_EXIT
    import torch

    work = args.work_dir
    work.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {"gpu": torch.cuda.get_device_name(0), "torch": torch.__version__,
                              "gpuMemoryGiB": round(torch.cuda.get_device_properties(0).total_memory / 1024**3, 1)}
    print(f"building full-size SDXL with random weights in {work / 'sdxl-random'} ...", flush=True)
    model_dir = build_full_sdxl(work / "sdxl-random")

    import yaml

    spec_file = work / "finetune.yaml"
    spec_file.write_text(yaml.safe_dump(train_spec(model_dir, args.steps, args.resolution)))
    out = work / "train-out"
    print(f"training {args.steps} steps at {args.resolution} px ...", flush=True)
    code, events = run_workload(["train", "--spec", str(spec_file), "--output", str(out),
                                 "--termination-log", str(work / "train-result.json")], work / "train.log")
    result = result_of(events)
    peak = peak_of(events)
    report["train"] = {
        "exitCode": code, "status": result.get("status"), "steps": args.steps, "resolution": args.resolution,
        "secondsPerStep": steady_seconds_per_step(events),
        "trainerStepsPerSecond": result.get("metrics", {}).get("stepsPerSecond"),
        "peakAllocatedGiB": round(peak.get("allocated", 0) / 1024**3, 2),
        "peakReservedGiB": round(peak.get("reserved", 0) / 1024**3, 2),
        "withinBudget24GiB": bool(peak) and peak["reserved"] <= GPU_BUDGET_BYTES,
    }
    if code != 0:
        return finish(args, report, f"training failed (exit {code}); see {work / 'train.log'}")

    deployment = work / "deployment.yaml"
    deployment.write_text(yaml.safe_dump({
        "apiVersion": "sdxl.io/v1alpha1", "kind": "SDXLDeployment", "metadata": {"name": "gpu-check"},
        "spec": {"baseModel": str(model_dir), "accelerator": "nvidia",
                 "lora": str(out / "lora" / "pytorch_lora_weights.safetensors")}}))
    print("preparing the fused fp16 pipeline ...", flush=True)
    started = time.monotonic()
    code, events = run_workload(["compile", "--spec", str(deployment), "--store", str(work / "store"),
                                 "--termination-log", str(work / "compile-result.json")], work / "compile.log")
    prepared = result_of(events).get("artifacts", {}).get("compiled")
    report["prepare"] = {"exitCode": code, "seconds": round(time.monotonic() - started, 1), "folder": prepared}
    if code != 0 or not prepared:
        return finish(args, report, f"prepare failed (exit {code}); see {work / 'compile.log'}")

    print(f"serving at {args.resolution} px, {args.serve_steps} steps ...", flush=True)
    sizes = [int(s) for s in args.batch_sizes.split(",") if s]
    report["serve"] = serve_throughput(Path(prepared), args.resolution, args.serve_steps, sizes)

    if args.reference_script and args.reference_python:
        print("running diffusers' reference script side by side ...", flush=True)
        done = subprocess.run(
            [sys.executable, str(REPO_ROOT / "bench" / "train_vs_reference.py"), "--full-sdxl",
             "--sdxl-config-dir", str(model_dir), "--reference-script", str(args.reference_script),
             "--reference-python", str(args.reference_python), "--our-python", sys.executable,
             "--steps", str(args.steps), "--json", str(work / "train_vs_reference.json")],
            check=False)
        report["reference"] = (json.loads((work / "train_vs_reference.json").read_text())
                               if done.returncode == 0 else {"exitCode": done.returncode})
    else:
        report["reference"] = "not run: pass --reference-script and --reference-python (see bench/README.md)"
    return finish(args, report, None)


def finish(args: argparse.Namespace, report: dict[str, Any], error: str | None) -> int:
    if error:
        report["error"] = error
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n")
    train = report.get("train", {})
    print(f"\nGPU: {report['gpu']} ({report['gpuMemoryGiB']} GiB), torch {report['torch']}")
    print(f"train   {train.get('steps')} steps at {train.get('resolution')} px bf16: "
          f"{train.get('secondsPerStep')} s/step, peak {train.get('peakAllocatedGiB')} GiB allocated / "
          f"{train.get('peakReservedGiB')} GiB reserved (budget 24 GiB: "
          f"{'within' if train.get('withinBudget24GiB') else 'OVER'})")
    if "prepare" in report:
        print(f"prepare {report['prepare']['seconds']} s")
    for key, value in report.get("serve", {}).items():
        if isinstance(value, dict):
            print(f"serve   {key}: {value['imagesPerSecond']} images/s ({value['images']} in {value['seconds']} s), "
                  f"peak {value['peakAllocatedGiB']} GiB")
    print(f"reference: {report.get('reference') if isinstance(report.get('reference'), str) else 'see JSON'}")
    print(f"results: {args.json}")
    if error:
        print(f"gpu-check: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
