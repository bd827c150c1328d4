"""Resumable training checkpoints under `<output>/checkpoints/step-N/`.

A checkpoint carries everything a restarted pod needs to continue as if it had never stopped:
the LoRA weights, optimizer and learning-rate schedule state, the noise generator and global RNG
states, the step, the loss history and the spec it was made with. The data order needs no state
(see training_data). A checkpoint counts only once complete: on a local or mounted volume it is
written to a temp folder, its files fsynced, and renamed into place; on object storage its
`COMPLETE` marker is uploaded last. So a pod killed mid-write loses at most `checkpointEvery`
steps, never the run. Should the newest checkpoint still be unreadable (a node crash can tear
what the page cache had not written), resuming falls back to the newest one that reads.

Nothing is unpickled: the weights are safetensors, the spec JSON, and the training state is
loaded with `torch.load(weights_only=True)` (tensors, numbers, strings, lists, tuples and dicts
only), so a checkpoint in a shared store cannot run code in the pod that resumes from it.
"""

from __future__ import annotations

import io
import json
import random
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sdxl_contract.compiled_artifacts import COMPLETE_MARKER
from sdxl_workloads import protocol
from sdxl_workloads.storage.atomic_write import fsync_file
from sdxl_workloads.storage.output import Output

CHECKPOINT_DIR = "checkpoints"
LORA_FILE = "lora_state.safetensors"
STATE_FILE = "training_state.pt"
SPEC_FILE = "spec.json"
# Older checkpoints are deleted once a newer one is complete; a few are kept in case the newest
# turns out to be unreadable.
KEEP_CHECKPOINTS = 3
# Spec fields that may change between a checkpoint and its resumption without changing the run.
RESUMABLE_CHANGES = {("output",), ("resources",), ("validation",), ("metadata",),
                     ("training", "maxSteps"), ("training", "checkpointEvery")}

_STEP_DIR = re.compile(r"^step-(\d+)$")


def step_dir_name(step: int) -> str:
    return f"step-{step}"


def trainable_state(models: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The trainable (LoRA) parameters by '<model>.<parameter name>'."""
    return {
        f"{prefix}.{name}": param.detach().to("cpu").contiguous()
        for prefix, model in models.items()
        for name, param in model.named_parameters()
        if param.requires_grad
    }


def load_trainable_state(models: dict[str, Any], state: dict[str, torch.Tensor], source: str) -> None:
    expected = trainable_state(models).keys()
    if set(expected) != set(state):
        raise protocol.WorkloadError(
            "InvalidInput",
            f"checkpoint {source} holds different LoRA layers than this run builds "
            "(was training.rank, targetModules or trainTextEncoder changed?); start a new output",
        )
    with torch.no_grad():
        for prefix, model in models.items():
            for name, param in model.named_parameters():
                if param.requires_grad:
                    param.copy_(state[f"{prefix}.{name}"].to(param.device, param.dtype))


def rng_state() -> dict[str, Any]:
    """The global RNG states as tensors and plain values (what `weights_only` loading accepts)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": (str(kind), torch.from_numpy(np.asarray(keys, dtype=np.int64)), int(pos), int(has_gauss),
                  float(cached)),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def write_checkpoint_files(folder: Path, *, models: dict[str, Any], optimizer: Any, lr_scheduler: Any,
                           generator: torch.Generator, step: int, losses: list[float],
                           spec: dict[str, Any], scaler: Any = None) -> None:
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    save_file(trainable_state(models), str(folder / LORA_FILE))
    _save_state({
        "step": step,
        "losses": losses,
        "optimizer": optimizer.state_dict(),
        "lr_scheduler": lr_scheduler.state_dict(),
        "generator": generator.get_state(),
        "rng": rng_state(),
        "scaler": scaler.state_dict() if scaler is not None else None,
    }, folder / STATE_FILE)
    (folder / SPEC_FILE).write_text(json.dumps(spec, indent=2, sort_keys=True, default=str))
    (folder / COMPLETE_MARKER).write_text(str(step))
    # On disk before anything renames or uploads them (the store's copy fsyncs its own files too).
    for name in (LORA_FILE, STATE_FILE, SPEC_FILE, COMPLETE_MARKER):
        fsync_file(folder / name)


def _save_state(state: dict[str, Any], path: Path) -> None:
    torch.save(state, path)


def save_checkpoint(output: Output, step: int, keep: int = KEEP_CHECKPOINTS, **contents: Any) -> str:
    """Write `checkpoints/step-N` at the output's destination and delete all but the newest `keep`.

    The folder is staged locally, then published (atomic rename on local/pvc, COMPLETE object
    last on S3), then the staged copy is dropped so the final publish does not copy it again.
    """
    relpath = f"{CHECKPOINT_DIR}/{step_dir_name(step)}"
    staged = output.local_dir / relpath
    write_checkpoint_files(staged, step=step, **contents)
    try:
        if output.exists(relpath):  # left by an earlier run: replace it whole, never file by file
            output.delete(relpath)
        output.publish(relpath)
    finally:
        shutil.rmtree(staged, ignore_errors=True)
    for old in complete_steps(output)[:-keep] if keep > 0 else []:
        output.delete(f"{CHECKPOINT_DIR}/{step_dir_name(old)}")
    return output.uri_of(relpath)


def complete_steps(output: Output) -> list[int]:
    """Steps of the complete checkpoints at the output's destination, oldest first."""
    steps = []
    for name in output.listdir(CHECKPOINT_DIR):
        match = _STEP_DIR.match(name)
        if match and output.exists(f"{CHECKPOINT_DIR}/{name}/{COMPLETE_MARKER}"):
            steps.append(int(match.group(1)))
    return sorted(steps)


def fetch_latest_checkpoint(output: Output) -> Path | None:
    """A local copy of the newest complete checkpoint under the output that reads, or None.

    A checkpoint that does not read (a torn file after a node crash, a file removed by hand) is
    reported and skipped for the next older one: retrying the newest would fail the same way on
    every attempt and burn the Job's retries.
    """
    steps = complete_steps(output)
    for step in reversed(steps):
        relpath = f"{CHECKPOINT_DIR}/{step_dir_name(step)}"
        location = output.uri_of(relpath)
        try:
            folder = check_checkpoint_folder(output.download(relpath), location)
            read_training_state(folder)
            checkpoint_spec(folder)
        except Exception as err:  # whatever a torn file raises: EOFError, RuntimeError, JSON, safetensors
            protocol.emit_event("log", level="warning", message=(
                f"checkpoint {location} is unreadable ({type(err).__name__}: {err}); trying an older one"))
            shutil.rmtree(output.local_dir / relpath, ignore_errors=True)
            continue
        protocol.emit_event("log", message=f"resuming from checkpoint {location} (step {step})")
        return folder
    if steps:
        protocol.emit_event("log", level="warning", message=(
            f"none of the {len(steps)} checkpoint(s) under {output.uri_of(CHECKPOINT_DIR)} is readable; "
            "starting at step 0"))
    return None


def check_checkpoint_folder(folder: Path, location: str) -> Path:
    missing = [name for name in (COMPLETE_MARKER, STATE_FILE, LORA_FILE, SPEC_FILE) if not (folder / name).is_file()]
    if missing:
        raise protocol.WorkloadError(
            "InvalidInput",
            f"--resume: {location} is not a complete training checkpoint (missing {', '.join(missing)}); "
            "pass 'latest' or the checkpoints/step-N folder of an earlier run",
        )
    return folder


def checkpoint_spec(folder: Path) -> dict[str, Any]:
    return dict(json.loads((folder / SPEC_FILE).read_text()))


def spec_differences(old: dict[str, Any], new: dict[str, Any], path: tuple[str, ...] = ()) -> list[str]:
    """Dotted names of fields whose change would make resuming train a different model."""
    differences: list[str] = []
    for key in sorted(set(old) | set(new)):
        here = (*path, key)
        if here in RESUMABLE_CHANGES:
            continue
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            differences += spec_differences(a, b, here)
        elif a != b:
            differences.append(".".join(here))
    return differences


def read_training_state(folder: Path) -> dict[str, Any]:
    from safetensors.torch import load_file

    # weights_only=True: the RNG states are stored as tensors and plain values (rng_state), so
    # nothing in a checkpoint is unpickled as code.
    state: dict[str, Any] = torch.load(io.BytesIO((folder / STATE_FILE).read_bytes()), weights_only=True)
    state["lora"] = load_file(str(folder / LORA_FILE))
    return state
