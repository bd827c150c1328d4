"""Training speed and memory: `sdxl-workload train` against diffusers' DreamBooth-LoRA SDXL script.

The reference is diffusers' `examples/dreambooth/train_dreambooth_lora_sdxl.py`. It is not part of
this repository: pass its path with `--reference-script`, and a Python that can run it with
`--reference-python` (its imports include torchvision, which does not import beside our pinned CPU
torch, so it lives in its own venv; see bench/README.md).

What is compared (both sides get exactly the same work):
- the same pipeline folder (`sdxl-workload tiny-model --size mid`, or random-weight full SDXL with
  `--full-sdxl`), the same instance images (the image files of `sdxl-workload sample-images`,
  copied without caption files so both train on the instance prompt alone), the same resolution,
  LoRA rank (alpha = rank, as the reference fixes it), UNet target modules, steps, batch size,
  precision, AdamW at lr 1e-4 with a constant schedule and no warm-up, Min-SNR gamma 5, centre crop,
  random flip, max grad norm 1, seed 42, gradient checkpointing on or off on both;
- no checkpoints on either side and no validation during training. Our trainer always renders its
  validation grid once at the end (it cannot be switched off; we ask for one inference step), and
  the reference reloads the whole pipeline at the end to load the LoRA back: both happen after the
  last training step, so they count in wall-clock time only, never in the steady-state rate.

How it is measured (each run is a separate process; the runs alternate A B B A ... so that drift in
a shared machine's load hits both sides alike):
- steady-state steps/s: the parent timestamps each progress report as it arrives (our JSON
  `progress` lines on stdout; the reference's tqdm `Steps: n/N` updates on stderr, with
  `TQDM_MININTERVAL=0` so none is throttled away) and takes (last step - first step) / (time
  between them), where the first step is the first one at or after `--warmup-steps` (default 1).
  Step 1 carries one-time costs (lazy initialisation, the first allocator growth; our trainer
  encodes and caches latents and prompt embeddings *before* step 1, the reference encodes each
  batch inside every step), so it is left out: this is the rate a long run converges to, which is
  what a user pays for.
- wall-clock: the whole process, from spawn to exit (imports, loading, caching, training,
  saving, the end-of-run work above); reported as seconds and as steps / seconds.
- CPU s/step: the process tree's user + system CPU seconds over the same steps, per step. On a
  shared machine other people's work stretches wall-clock time but not (much) the CPU time a step
  needs, so this is the steadier number there; `--threads 1` keeps OpenMP from spin-waiting,
  which would count as CPU time. The best (fastest) run of each side and the machine's load
  average are reported too.
- peak RSS: the larger of the kernel's `ru_maxrss` for the child (from `os.wait4`, exact, the
  largest single process) and a 20 Hz psutil sample of the whole process tree's summed RSS (catches
  data-loader workers or other children, if any).
- with `--full-sdxl` (a GPU): s/step instead of steps/s, and peak GPU memory as each process's own
  `torch.cuda.max_memory_allocated()` at exit. Both processes run under the same small launcher
  (written to the work folder) that prints it from an `atexit` hook; it turns
  `torch.cuda.reset_peak_memory_stats` into a no-op so that a reset inside either program cannot
  hide part of its peak. The launcher runs in both modes, so both sides pay the same start-up.

The median of `--runs` runs (default 3, at least 2) of each side is reported; the table prints the speed
ratio (ours / reference; above 1 is faster) and the memory ratio (ours / reference; below 1 is
leaner) against the target: at least 1.25x the reference's steps/s at no more than its peak memory.
Results go to bench/results/train_vs_reference.json (or `--json`).

CPU (the default): the `mid` model at 256 px (a 32x32 latent: at 128 px the UNet's lowest level is
4x4 and per-call overhead, not compute, dominates, which is nothing like SDXL's 128x128 latents);
`--threads N` pins the OMP/MKL threads of both sides.
GPU: `--full-sdxl --sdxl-config-dir DIR`, where DIR holds the public SDXL 1.0 base repository
without its weights (model_index.json, scheduler/, text_encoder{,_2}/config.json,
tokenizer{,_2}/, unet/config.json, vae/config.json); random weights are built from those configs
(seed 0), 1024 px, bf16, gradient checkpointing. `--our-python` must then be a Python whose torch
sees the GPU (our .venv pins the CPU wheel).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_JSON = REPO_ROOT / "bench" / "results" / "train_vs_reference.json"
INSTANCE_PROMPT = "a photo of sks person"
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp"}
TARGET_SPEEDUP = 1.25
TARGET_MEMORY_RATIO = 1.0
RSS_SAMPLE_SECONDS = 0.05

# Both sides run under this launcher: it reports torch's view of the process at exit (threads, and
# on a GPU the peak allocated memory) on stderr, after the program itself has finished.
LAUNCHER_SOURCE = '''\
import atexit, json, runpy, sys

PATCH_PEAK_RESET = __import__("os").environ.get("BENCH_KEEP_CUDA_PEAK") == "1"
if PATCH_PEAK_RESET:
    import torch
    torch.cuda.reset_peak_memory_stats = lambda *a, **k: None
    torch.cuda.memory.reset_peak_memory_stats = torch.cuda.reset_peak_memory_stats


def report():
    info = {}
    torch = sys.modules.get("torch")
    if torch is not None:
        info["torch"] = torch.__version__
        info["threads"] = torch.get_num_threads()
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            info["cuda_device"] = torch.cuda.get_device_name()
            info["cuda_max_memory_allocated"] = torch.cuda.max_memory_allocated()
            info["cuda_max_memory_reserved"] = torch.cuda.max_memory_reserved()
    sys.stderr.write("\\nBENCH_LAUNCHER " + json.dumps(info) + "\\n")
    sys.stderr.flush()


atexit.register(report)
kind, target, *rest = sys.argv[1:]
sys.argv = [target, *rest]
if kind == "module":
    runpy.run_module(target, run_name="__main__", alter_sys=True)
else:
    runpy.run_path(target, run_name="__main__")
'''

TQDM_STEP = re.compile(r"Steps:.*?\|\s*(\d+)/(\d+) \[")
LAUNCHER_LINE = re.compile(r"BENCH_LAUNCHER (\{.*\})")


@dataclass
class Workload:
    """What both trainers are asked to do."""

    model_dir: Path
    images_dir: Path
    steps: int
    resolution: int
    rank: int
    batch_size: int
    precision: str  # no | fp16 | bf16
    gradient_checkpointing: bool
    seed: int = 42
    learning_rate: float = 1e-4
    snr_gamma: float = 5.0
    max_grad_norm: float = 1.0


@dataclass
class RunResult:
    side: str  # "ours" | "reference"
    index: int
    returncode: int
    wall_s: float
    peak_rss_bytes: int
    ru_maxrss_bytes: int
    tree_rss_peak_bytes: int
    steps_seen: int
    steady_steps_per_s: float | None
    first_step_s: float | None  # from spawn to the first counted step
    last_step_s: float | None  # from spawn to the last step
    # CPU seconds (all threads, user + system) per steady-state step: what a step costs however
    # many other processes compete for the cores, as long as threads do not spin-wait.
    cpu_s_per_step: float | None = None
    cpu_s_total: float = 0.0  # the whole process (ru_utime + ru_stime)
    load_average: float = 0.0  # the machine's 1-minute load average around the run (others' work too)
    cuda_max_memory_allocated: int | None = None
    launcher: dict[str, Any] = field(default_factory=dict)
    log_dir: str = ""

    @property
    def wall_steps_per_s(self) -> float:
        return self.steps_seen / self.wall_s if self.wall_s > 0 else 0.0


# ---------------------------------------------------------------------------------------------
# inputs


def build_inputs(args: argparse.Namespace, work: Path) -> tuple[Path, Path]:
    """The pipeline folder and an images-only folder, built once and shared by every run."""
    workload_cli = [str(args.our_python), "-m", "sdxl_workloads"]
    model_dir = work / "model"
    if args.full_sdxl:
        if not model_dir.exists():
            build_random_sdxl(Path(args.sdxl_config_dir), model_dir)
    elif not model_dir.exists():
        subprocess.run([*workload_cli, "tiny-model", str(model_dir), "--size", args.size], check=True,
                       env=child_env(args, work))
    samples = work / "samples"
    if not samples.exists():
        subprocess.run([*workload_cli, "sample-images", str(samples)], check=True, env=child_env(args, work))
    images = work / "instance-images"
    if images.exists():
        shutil.rmtree(images)
    images.mkdir()
    # Image files only: the reference opens every file in the folder as an image, and our trainer
    # would read a same-named .txt as that image's caption, which the reference cannot do.
    for path in sorted(samples.iterdir()):
        if path.suffix.lower() in IMAGE_SUFFIXES:
            shutil.copy2(path, images / path.name)
    if len(list(images.iterdir())) < 3:
        sys.exit(f"error: {samples} holds fewer than 3 images; the benchmark needs the sample-subject set")
    return model_dir, images


def build_random_sdxl(config_dir: Path, out: Path) -> None:
    """Full-size SDXL with random weights (seed 0) from the public configs, in diffusers layout."""
    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    required = ["model_index.json", "scheduler", "tokenizer", "tokenizer_2", "unet/config.json",
                "vae/config.json", "text_encoder/config.json", "text_encoder_2/config.json"]
    missing = [name for name in required if not (config_dir / name).exists()]
    if missing:
        sys.exit(f"error: --sdxl-config-dir {config_dir} lacks {', '.join(missing)}; copy the "
                 "stabilityai/stable-diffusion-xl-base-1.0 repository there without its weight files")
    staging = out.with_name(out.name + ".partial")
    if staging.exists():
        shutil.rmtree(staging)
    shutil.copytree(config_dir, staging,
                    ignore=shutil.ignore_patterns("*.safetensors", "*.bin", "*.ckpt", "*.onnx*", "*.msgpack"))
    torch.manual_seed(0)
    parts: list[tuple[str, Callable[[], Any]]] = [
        ("unet", lambda: UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(config_dir / "unet"))),
        ("vae", lambda: AutoencoderKL.from_config(AutoencoderKL.load_config(config_dir / "vae"))),
        ("text_encoder",
         lambda: CLIPTextModel(CLIPTextConfig.from_pretrained(config_dir / "text_encoder"))),
        ("text_encoder_2",
         lambda: CLIPTextModelWithProjection(CLIPTextConfig.from_pretrained(config_dir / "text_encoder_2"))),
    ]
    for name, make in parts:
        print(f"building random {name} ...", flush=True)
        model = make()
        model.save_pretrained(staging / name)
        del model
    staging.rename(out)


# ---------------------------------------------------------------------------------------------
# command lines


def child_env(args: argparse.Namespace, work: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update({
        "PYTHONUNBUFFERED": "1",
        "TQDM_MININTERVAL": "0",  # every reference step reaches the log, none is throttled away
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "SDXL_CACHE_DIR": str(work / "cache"),
        "PYTHONPATH": "",
    })
    if args.threads:
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            env[var] = str(args.threads)
    if args.full_sdxl:
        env["BENCH_KEEP_CUDA_PEAK"] = "1"
    return env


def our_spec(load: Workload, output: Path) -> dict[str, Any]:
    return {
        "baseModel": str(load.model_dir),
        "instanceImages": str(load.images_dir),
        "instancePrompt": INSTANCE_PROMPT,
        "training": {
            "maxSteps": load.steps,
            "learningRate": load.learning_rate,
            "rank": load.rank,
            "alpha": load.rank,  # the reference fixes lora_alpha = rank
            "targetModules": ["to_k", "to_q", "to_v", "to_out.0"],
            "resolution": load.resolution,
            "batchSize": load.batch_size,
            "gradientAccumulation": 1,
            "trainTextEncoder": False,
            "mixedPrecision": load.precision,
            "gradientCheckpointing": load.gradient_checkpointing,
            "optimizer": "adamw",
            "lrScheduler": "constant",
            "lrWarmupSteps": 0,
            "snrGamma": load.snr_gamma,
            "noiseOffset": 0.0,
            "maxGradNorm": load.max_grad_norm,
            "seed": load.seed,
            "checkpointEvery": 0,
            "crop": "center",
            "randomFlip": True,
        },
        # Validation runs once after the last step whatever we ask; keep it as cheap as it goes.
        "validation": {"every": 0, "numInferenceSteps": 1},
        "output": str(output),
    }


def our_command(args: argparse.Namespace, launcher: Path, spec_path: Path, output: Path,
                termination_log: Path) -> list[str]:
    return [str(args.our_python), str(launcher), "module", "sdxl_workloads", "train",
            "--spec", str(spec_path), "--output", str(output), "--termination-log", str(termination_log)]


def reference_command(args: argparse.Namespace, launcher: Path, load: Workload, output: Path) -> list[str]:
    command = [
        str(args.reference_python), str(launcher), "path", str(args.reference_script),
        "--pretrained_model_name_or_path", str(load.model_dir),
        "--instance_data_dir", str(load.images_dir),
        "--instance_prompt", INSTANCE_PROMPT,
        "--resolution", str(load.resolution),
        "--train_batch_size", str(load.batch_size),
        "--max_train_steps", str(load.steps),
        "--rank", str(load.rank),
        "--mixed_precision", load.precision,
        "--learning_rate", str(load.learning_rate),
        "--lr_scheduler", "constant",
        "--lr_warmup_steps", "0",  # its default is 500
        "--snr_gamma", str(load.snr_gamma),
        "--max_grad_norm", str(load.max_grad_norm),
        "--center_crop",
        "--random_flip",
        "--seed", str(load.seed),
        "--optimizer", "AdamW",
        "--dataloader_num_workers", "0",
        # No checkpoint inside the run (its default is every 500 steps).
        "--checkpointing_steps", str(load.steps + 1_000_000),
        "--output_dir", str(output),
    ]
    if load.gradient_checkpointing:
        command.append("--gradient_checkpointing")
    return command


# ---------------------------------------------------------------------------------------------
# running one process


class StreamWatcher(threading.Thread):
    """Copies a child's stream to a file and timestamps the first sighting of each training step."""

    def __init__(self, stream: Any, log_path: Path, parse: Callable[[str], int | None], start: float,
                 cpu_seconds: Callable[[], float]) -> None:
        super().__init__(daemon=True)
        self.stream = stream
        self.log_path = log_path
        self.parse = parse
        self.start_time = start
        self.cpu_seconds = cpu_seconds
        self.step_times: dict[int, float] = {}
        self.step_cpu: dict[int, float] = {}  # the process tree's CPU seconds when the step was seen
        self.text_tail = ""
        self.launcher: dict[str, Any] = {}

    def run(self) -> None:
        pending = ""
        with self.log_path.open("wb") as log:
            while True:
                chunk = os.read(self.stream.fileno(), 65536)
                if not chunk:
                    break
                now = time.monotonic() - self.start_time
                log.write(chunk)
                pending += chunk.decode("utf-8", errors="replace")
                # tqdm rewrites its line after "\r" without a newline, so the unfinished last piece
                # is parsed too (it is kept for the next chunk; a step is only counted once).
                pieces = re.split(r"[\r\n]", pending)
                for piece in pieces:
                    self.scan(piece, now)
                pending = pieces[-1]
                self.text_tail = (self.text_tail + chunk.decode("utf-8", errors="replace"))[-6000:]

    def scan(self, piece: str, now: float) -> None:
        step = self.parse(piece)
        if step is not None and step not in self.step_times:
            self.step_times[step] = now
            self.step_cpu[step] = self.cpu_seconds()
        found = LAUNCHER_LINE.search(piece)
        if found:
            with contextlib.suppress(json.JSONDecodeError):
                self.launcher = json.loads(found.group(1))


def parse_our_progress(line: str) -> int | None:
    line = line.strip()
    if not line.startswith("{") or '"progress"' not in line:
        return None
    try:
        event = json.loads(line)
    except json.JSONDecodeError:
        return None
    if event.get("event") != "progress" or not isinstance(event.get("step"), int):
        return None
    return int(event["step"])


def parse_reference_progress(line: str) -> int | None:
    found = TQDM_STEP.search(line)
    return int(found.group(1)) if found else None


def tree_cpu_seconds(root: Any) -> float:
    """User + system CPU seconds of the process and its live children."""
    import psutil

    total = 0.0
    try:
        processes = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0.0
    for process in processes:
        try:
            times = process.cpu_times()
        except psutil.Error:
            continue
        total += times.user + times.system
    return total


def load_average() -> float:
    return os.getloadavg()[0]


def tree_rss(root: Any) -> int:
    import psutil

    total = 0
    try:
        processes = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0
    for process in processes:
        try:
            total += process.memory_info().rss
        except psutil.Error:
            continue
    return total


def run_process(command: Sequence[str], env: dict[str, str], log_dir: Path, side: str, index: int,
                parse: Callable[[str], int | None], warmup_steps: int, timeout_s: float) -> RunResult:
    import psutil

    log_dir.mkdir(parents=True, exist_ok=True)
    (log_dir / "command.json").write_text(json.dumps(list(command), indent=1))
    load_before = load_average()
    start = time.monotonic()
    process = subprocess.Popen(list(command), stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                               cwd=log_dir)
    root = psutil.Process(process.pid)
    watchers = [
        StreamWatcher(process.stdout, log_dir / "stdout.log", parse, start, lambda: tree_cpu_seconds(root)),
        StreamWatcher(process.stderr, log_dir / "stderr.log", parse, start, lambda: tree_cpu_seconds(root)),
    ]
    for watcher in watchers:
        watcher.start()
    tree_peak = 0
    done = threading.Event()

    def sample() -> None:
        nonlocal tree_peak
        while not done.is_set():
            tree_peak = max(tree_peak, tree_rss(root))
            done.wait(RSS_SAMPLE_SECONDS)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    # wait4 rather than Popen.wait: it also hands back the child's own resource usage.
    deadline = start + timeout_s
    while True:
        pid, status, usage = os.wait4(process.pid, os.WNOHANG)
        if pid:
            break
        if time.monotonic() > deadline:
            process.kill()
            pid, status, usage = os.wait4(process.pid, 0)
            break
        time.sleep(0.02)
    wall = time.monotonic() - start
    process.returncode = os.waitstatus_to_exitcode(status)
    done.set()
    sampler.join()
    for watcher in watchers:
        watcher.join(timeout=10)
    step_times: dict[int, float] = {}
    step_cpu: dict[int, float] = {}
    for watcher in watchers:
        for step, when in watcher.step_times.items():
            if when <= step_times.get(step, when):
                step_times[step] = when
                step_cpu[step] = watcher.step_cpu[step]
    launcher = next((w.launcher for w in watchers if w.launcher), {})
    ru_maxrss = int(usage.ru_maxrss) * 1024  # KiB on Linux
    steady, first_at, last_at = steady_rate(step_times, warmup_steps)
    cpu_rate, _, _ = steady_rate(step_cpu, warmup_steps)
    if process.returncode != 0:
        tail = "".join(w.text_tail for w in watchers)[-4000:]
        sys.stderr.write(f"\n{side} run {index} exited with {process.returncode}; logs in {log_dir}\n{tail}\n")
    return RunResult(
        side=side, index=index, returncode=process.returncode, wall_s=wall,
        peak_rss_bytes=max(ru_maxrss, tree_peak), ru_maxrss_bytes=ru_maxrss, tree_rss_peak_bytes=tree_peak,
        steps_seen=max(step_times, default=0), steady_steps_per_s=steady,
        first_step_s=first_at, last_step_s=last_at,
        cpu_s_per_step=1 / cpu_rate if cpu_rate else None,
        cpu_s_total=usage.ru_utime + usage.ru_stime,
        load_average=(load_before + load_average()) / 2,
        cuda_max_memory_allocated=launcher.get("cuda_max_memory_allocated"), launcher=launcher,
        log_dir=str(log_dir),
    )


def steady_rate(step_times: dict[int, float], warmup_steps: int) -> tuple[float | None, float | None, float | None]:
    """(steps/s between the first counted step and the last, time of the first, time of the last)."""
    counted = sorted(step for step in step_times if step >= warmup_steps)
    if len(counted) < 2:
        return None, None, None
    first, last = counted[0], counted[-1]
    elapsed = step_times[last] - step_times[first]
    if elapsed <= 0:
        return None, step_times[first], step_times[last]
    return (last - first) / elapsed, step_times[first], step_times[last]


# ---------------------------------------------------------------------------------------------
# the benchmark


def median(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def summarise(results: Sequence[RunResult]) -> dict[str, Any]:
    ok = [r for r in results if r.returncode == 0]
    return {
        "runs": len(results),
        "succeeded": len(ok),
        "steady_steps_per_s": median([r.steady_steps_per_s for r in ok]),
        "steady_s_per_step": median([1 / r.steady_steps_per_s if r.steady_steps_per_s else None for r in ok]),
        "wall_s": median([r.wall_s for r in ok]),
        "wall_steps_per_s": median([r.wall_steps_per_s for r in ok]),
        "first_step_s": median([r.first_step_s for r in ok]),
        "cpu_s_per_step": median([r.cpu_s_per_step for r in ok]),
        "cpu_s_total": median([r.cpu_s_total for r in ok]),
        "best_steady_steps_per_s": max((r.steady_steps_per_s for r in ok if r.steady_steps_per_s), default=None),
        "load_average": median([r.load_average for r in ok]),
        "peak_rss_bytes": median([r.peak_rss_bytes for r in ok]),
        "cuda_max_memory_allocated": median([r.cuda_max_memory_allocated for r in ok]),
    }


def ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def print_table(ours: dict[str, Any], ref: dict[str, Any], full_sdxl: bool) -> dict[str, Any]:
    gib = 1024**3
    mib = 1024**2
    speed = ratio(ours["steady_steps_per_s"], ref["steady_steps_per_s"])
    wall_speed = ratio(ref["wall_s"], ours["wall_s"])
    best_speed = ratio(ours["best_steady_steps_per_s"], ref["best_steady_steps_per_s"])
    cpu_speed = ratio(ref["cpu_s_per_step"], ours["cpu_s_per_step"])
    memory = ratio(ours["peak_rss_bytes"], ref["peak_rss_bytes"])
    gpu_memory = ratio(ours["cuda_max_memory_allocated"], ref["cuda_max_memory_allocated"])
    rows = [
        ("steady steps/s", fmt(ours["steady_steps_per_s"], ".3f"), fmt(ref["steady_steps_per_s"], ".3f"),
         fmt(speed, ".2f") + "x"),
        ("steady s/step", fmt(ours["steady_s_per_step"], ".3f"), fmt(ref["steady_s_per_step"], ".3f"), ""),
        ("wall-clock s", fmt(ours["wall_s"], ".1f"), fmt(ref["wall_s"], ".1f"), fmt(wall_speed, ".2f") + "x"),
        ("wall steps/s", fmt(ours["wall_steps_per_s"], ".3f"), fmt(ref["wall_steps_per_s"], ".3f"), ""),
        ("best steady steps/s", fmt(ours["best_steady_steps_per_s"], ".3f"),
         fmt(ref["best_steady_steps_per_s"], ".3f"), fmt(best_speed, ".2f") + "x"),
        ("CPU s/step", fmt(ours["cpu_s_per_step"], ".3f"), fmt(ref["cpu_s_per_step"], ".3f"),
         fmt(cpu_speed, ".2f") + "x"),
        ("CPU s whole run", fmt(ours["cpu_s_total"], ".1f"), fmt(ref["cpu_s_total"], ".1f"), ""),
        ("spawn to 1st counted s", fmt(ours["first_step_s"], ".1f"), fmt(ref["first_step_s"], ".1f"), ""),
        ("load average", fmt(ours["load_average"], ".1f"), fmt(ref["load_average"], ".1f"), ""),
        ("peak RSS MiB", fmt(ours["peak_rss_bytes"] and ours["peak_rss_bytes"] / mib, ".0f"),
         fmt(ref["peak_rss_bytes"] and ref["peak_rss_bytes"] / mib, ".0f"), fmt(memory, ".2f") + "x"),
    ]
    if full_sdxl:
        rows.append(("peak GPU mem GiB",
                     fmt(ours["cuda_max_memory_allocated"] and ours["cuda_max_memory_allocated"] / gib, ".2f"),
                     fmt(ref["cuda_max_memory_allocated"] and ref["cuda_max_memory_allocated"] / gib, ".2f"),
                     fmt(gpu_memory, ".2f") + "x"))
    width = max(len(r[0]) for r in rows)
    print(f"\n{'median of runs':<{width}}  {'ours':>10}  {'reference':>10}  {'ratio':>9}")
    for name, a, b, c in rows:
        print(f"{name:<{width}}  {a:>10}  {b:>10}  {c:>9}")
    print("ratio: speed rows = how many times faster ours is; memory rows = ours / reference")
    memory_for_target = gpu_memory if full_sdxl else memory
    met = (speed is not None and memory_for_target is not None
           and speed >= TARGET_SPEEDUP and memory_for_target <= TARGET_MEMORY_RATIO)
    print(f"\ntarget: >= {TARGET_SPEEDUP}x steady steps/s at <= {TARGET_MEMORY_RATIO:.2f}x peak "
          f"{'GPU memory' if full_sdxl else 'RSS'}: {'MET' if met else 'NOT MET'}")
    return {"speedup_steady": speed, "speedup_wall": wall_speed, "speedup_best": best_speed,
            "speedup_cpu_time": cpu_speed, "memory_ratio_rss": memory,
            "memory_ratio_gpu": gpu_memory, "target_met": met}


def python_versions(python: Path) -> dict[str, str]:
    code = ("import json, torch, diffusers, transformers, peft, accelerate;"
            "print(json.dumps({m.__name__: m.__version__ for m in (torch, diffusers, transformers, peft, accelerate)}"
            " | {'cuda': str(torch.cuda.is_available())}))")
    done = subprocess.run([str(python), "-c", code], capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"error: {python} cannot import torch/diffusers/transformers/peft/accelerate:\n{done.stderr[-2000:]}")
    versions: dict[str, str] = json.loads(done.stdout.strip().splitlines()[-1])
    return versions


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reference-script", required=True, type=Path,
                        help="path to diffusers' examples/dreambooth/train_dreambooth_lora_sdxl.py")
    parser.add_argument("--reference-python", type=Path, default=REPO_ROOT / ".venv-reference" / "bin" / "python",
                        help="Python that runs the reference (default: .venv-reference/bin/python)")
    parser.add_argument("--our-python", type=Path, default=REPO_ROOT / ".venv" / "bin" / "python",
                        help="Python with sdxl_workloads installed (default: .venv/bin/python)")
    parser.add_argument("--runs", type=int, default=3, help="runs of each side; the median is reported (default 3; 2 at least, "
                        "for a quick look when time is short)")
    parser.add_argument("--steps", type=int, default=None, help="training steps per run (default 30; 20 full SDXL)")
    parser.add_argument("--warmup-steps", type=int, default=1,
                        help="steps before this one are left out of the steady-state rate (default 1)")
    parser.add_argument("--resolution", type=int, default=None, help="pixels (default 256; 1024 full SDXL)")
    parser.add_argument("--rank", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--precision", choices=["no", "fp16", "bf16"], default=None,
                        help="mixed precision of both sides (default no; bf16 full SDXL)")
    parser.add_argument("--gradient-checkpointing", action=argparse.BooleanOptionalAction, default=None,
                        help="on both sides (default off on CPU, on with --full-sdxl)")
    parser.add_argument("--size", choices=["tiny", "mid"], default="mid", help="built-in model size (CPU mode)")
    parser.add_argument("--threads", type=int, default=0, help="OMP/MKL threads for both sides (default: torch's)")
    parser.add_argument("--full-sdxl", action="store_true", help="full-size SDXL with random weights on a GPU")
    parser.add_argument("--sdxl-config-dir", type=Path,
                        help="the SDXL base repository's configs and tokenizers (needed with --full-sdxl)")
    parser.add_argument("--work-dir", type=Path, help="keep the model, images and logs here (default: a temp dir)")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help=f"results file (default {DEFAULT_JSON})")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds one run may take")
    parser.add_argument("--fail-below-target", action="store_true", help="exit 1 when the target is not met")
    parser.add_argument("--only", choices=["ours", "reference"],
                        help="run one side only (for profiling or checking a setup; no ratios)")
    args = parser.parse_args(argv)
    if args.runs < 2:
        parser.error("--runs must be at least 2 (3 or more on a shared machine: the median of fewer says little)")
    if not args.reference_script.is_file():
        parser.error(f"--reference-script {args.reference_script} is not a file; get "
                     "examples/dreambooth/train_dreambooth_lora_sdxl.py from the diffusers repository")
    for flag, python in (("--reference-python", args.reference_python), ("--our-python", args.our_python)):
        if not python.exists():
            parser.error(f"{flag} {python} does not exist (see bench/README.md for the venvs)")
    if args.full_sdxl and args.sdxl_config_dir is None:
        parser.error("--full-sdxl needs --sdxl-config-dir (the public SDXL configs; the hub is not reachable)")
    defaults = {"steps": (30, 20), "resolution": (256, 1024), "precision": ("no", "bf16"),
                "gradient_checkpointing": (False, True)}
    for name, (cpu, gpu) in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, gpu if args.full_sdxl else cpu)
    if args.steps < args.warmup_steps + 2:
        parser.error(f"--steps must be at least --warmup-steps + 2 ({args.warmup_steps + 2})")
    if args.resolution % 8 or not 64 <= args.resolution <= 2048:
        parser.error(f"--resolution must be a multiple of 8 from 64 to 2048, got {args.resolution}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    versions = {"ours": python_versions(args.our_python), "reference": python_versions(args.reference_python)}
    if args.full_sdxl:
        for side, found in versions.items():
            if found.get("cuda") != "True":
                sys.exit(f"error: --full-sdxl needs a GPU, and the {side} Python's torch "
                         f"({found['torch']}) sees none")
    keep = args.work_dir is not None
    work = (args.work_dir or Path(tempfile.mkdtemp(prefix="train-vs-reference-"))).resolve()
    work.mkdir(parents=True, exist_ok=True)
    launcher = work / "bench_launcher.py"
    launcher.write_text(LAUNCHER_SOURCE)
    model_dir, images_dir = build_inputs(args, work)
    load = Workload(model_dir=model_dir, images_dir=images_dir, steps=args.steps, resolution=args.resolution,
                    rank=args.rank, batch_size=args.batch_size, precision=args.precision,
                    gradient_checkpointing=args.gradient_checkpointing)
    env = child_env(args, work)
    print(f"work folder {work}; {args.runs} runs per side of {load.steps} steps at {load.resolution} px, "
          f"rank {load.rank}, batch {load.batch_size}, precision {load.precision}, gradient checkpointing "
          f"{'on' if load.gradient_checkpointing else 'off'}", flush=True)

    results: list[RunResult] = []
    for index in range(args.runs):
        order = ("ours", "reference") if index % 2 == 0 else ("reference", "ours")
        for side in order:
            if args.only and side != args.only:
                continue
            run_dir = work / "runs" / f"{index}-{side}"
            if run_dir.exists():
                shutil.rmtree(run_dir)
            output = run_dir / "output"
            if side == "ours":
                run_dir.mkdir(parents=True)
                spec_path = run_dir / "spec.json"
                spec_path.write_text(json.dumps(our_spec(load, output), indent=1))
                command = our_command(args, launcher, spec_path, output, run_dir / "termination-log.json")
                parse = parse_our_progress
            else:
                command = reference_command(args, launcher, load, output)
                parse = parse_reference_progress
            result = run_process(command, env, run_dir, side, index, parse, args.warmup_steps, args.timeout)
            results.append(result)
            print(f"  run {index} {side:<9} rc={result.returncode} steps={result.steps_seen} "
                  f"steady={fmt(result.steady_steps_per_s, '.3f')} steps/s "
                  f"cpu={fmt(result.cpu_s_per_step, '.2f')}s/step wall={result.wall_s:.1f}s "
                  f"load={result.load_average:.1f} "
                  f"peakRSS={result.peak_rss_bytes / 1024**2:.0f}MiB"
                  + (f" gpu={result.cuda_max_memory_allocated / 1024**3:.2f}GiB"
                     if result.cuda_max_memory_allocated else ""), flush=True)
            if result.returncode != 0 or result.steps_seen != load.steps:
                sys.exit(f"error: the {side} run did not finish its {load.steps} steps "
                         f"(saw {result.steps_seen}); logs in {run_dir}")
            if not keep:
                shutil.rmtree(output, ignore_errors=True)

    ours = summarise([r for r in results if r.side == "ours"])
    ref = summarise([r for r in results if r.side == "reference"])
    verdict = print_table(ours, ref, args.full_sdxl)
    report = {
        "benchmark": "train_vs_reference",
        "mode": "full-sdxl" if args.full_sdxl else f"cpu-{args.size}",
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"platform": platform.platform(), "processor": platform.processor(),
                    "cpus": os.cpu_count(), "threads": args.threads or "torch default"},
        "versions": versions,
        "reference_script": str(args.reference_script.resolve()),
        "workload": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(load).items()},
        "warmup_steps": args.warmup_steps,
        "target": {"speedup": TARGET_SPEEDUP, "memory_ratio": TARGET_MEMORY_RATIO},
        "ours": ours,
        "reference": ref,
        **verdict,
        "runs": [asdict(r) | {"wall_steps_per_s": r.wall_steps_per_s} for r in results],
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2))
    print(f"results: {args.json}")
    if not keep:
        shutil.rmtree(work, ignore_errors=True)
    return 1 if args.fail_below_target and not verdict["target_met"] else 0


if __name__ == "__main__":
    sys.exit(main())
