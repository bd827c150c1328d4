"""`sdxl-workload compile`: turn base model + LoRA into the folder a server loads, once per key.

accelerator neuron: compile for Inferentia2 with optimum-neuron (neuron_export). nvidia / cpu:
"prepare" a fused diffusers pipeline (pipeline_prepare). Either way the result is published to
`<store>/compiled/<key>/` with `compile_info.json`, and a `COMPLETE` marker published after every
other file. An existing `COMPLETE` under the same key means the work is done: the command reports
success at once (`cacheHit: true`) without loading anything.

Stages, each a progress line (step/totalSteps plus `stage` and `message`): resolving, loading,
fusing (prepare) or compiling (neuron), saving, publishing.
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from sdxl_workloads import compile_key as keys
from sdxl_workloads import lora_input, protocol, storage
from sdxl_workloads.deployment_spec import DeploymentSpec, NeuronSettings
from sdxl_workloads.protocol import WorkloadError

COMPILED_PREFIX = "compiled"
INFO_FILE = "compile_info.json"
COMPLETE_MARKER = storage.COMPLETE_MARKER
_KEY = re.compile(r"^[0-9a-f]{64}$")
# Progress steps; fusing (nvidia/cpu) and compiling (neuron) are the same step.
STAGE_STEPS = {"resolving": 1, "loading": 2, "fusing": 3, "compiling": 3, "saving": 4, "publishing": 5}
TOTAL_STEPS = 5
# A Neuron compile is one ~40-minute call: repeat its progress line this often so it shows life.
HEARTBEAT_SECONDS = 60.0
# Libraries whose versions describe an artifact (compile_info.json).
_VERSIONED = ("torch", "diffusers", "transformers", "peft", "accelerate", "safetensors",
              "optimum-neuron", "neuronx-cc", "torch-neuronx")


@dataclass(frozen=True)
class CompileRequest:
    """Everything that decides the artifact, resolved from spec + flags."""

    base_model: str  # as written in the spec (part of the key)
    base_revision: str | None
    lora_uri: str
    lora_sha256: str | None  # known ahead (flag or spec); verified against the file
    accelerator: str
    neuron: NeuronSettings
    lora_scale: float
    runtime_id: str
    store: str
    key: str | None  # given by the operator, else computed


def _progress(stage: str, message: str) -> None:
    protocol.emit_progress(STAGE_STEPS[stage], TOTAL_STEPS, stage=stage, message=message)


@contextmanager
def _heartbeat(stage: str, message: str) -> Iterator[None]:
    """Re-emit the stage's progress line (with the elapsed time) until the block ends."""
    stop = threading.Event()
    started = time.monotonic()
    interval = HEARTBEAT_SECONDS

    def beat() -> None:
        while not stop.wait(interval):
            protocol.emit_progress(STAGE_STEPS[stage], TOTAL_STEPS, stage=stage, message=message,
                                   elapsedSeconds=round(time.monotonic() - started))

    thread = threading.Thread(target=beat, name="progress-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def resolve_request(spec: DeploymentSpec, args: argparse.Namespace) -> CompileRequest:
    lora = getattr(args, "lora", None) or spec.lora
    if not lora:
        hint = (" (spec.fineTune is resolved by the operator, which passes --lora)" if spec.fine_tune else "")
        raise WorkloadError("InvalidInput", f"lora: no LoRA to compile; set spec.lora or pass --lora URI{hint}")
    base = getattr(args, "base_model", None) or spec.base_model
    if not base:
        raise WorkloadError("InvalidInput", "spec.baseModel: required (the model the LoRA was trained on); "
                                            "set it or pass --base-model")
    sha = getattr(args, "lora_sha256", None) or (spec.lora_sha256 if lora == spec.lora else None)
    if sha is not None and not re.fullmatch(r"[0-9a-fA-F]{64}", sha):
        raise WorkloadError("InvalidInput", f"--lora-sha256: must be 64 hexadecimal characters, got {sha!r}")
    key = getattr(args, "key", None)
    if key is not None and not _KEY.match(key):
        raise WorkloadError("InvalidInput", f"--key: must be 64 lowercase hexadecimal characters, got {key!r}")
    return CompileRequest(
        base_model=base,
        base_revision=spec.base_model_revision,
        lora_uri=lora,
        lora_sha256=sha.lower() if sha else None,
        accelerator=spec.accelerator,
        neuron=spec.neuron,
        lora_scale=spec.lora_scale,
        runtime_id=getattr(args, "runtime_id", None) or keys.default_runtime_id(spec.accelerator),
        store=args.store,
        key=key,
    )


def key_inputs_for(request: CompileRequest, lora_sha256: str | None) -> dict[str, Any]:
    neuron = request.accelerator == "neuron"
    return keys.key_inputs(
        base_model=request.base_model,
        base_revision=request.base_revision,
        lora=keys.lora_digest(lora_sha256, request.lora_uri),
        lora_scale=request.lora_scale,
        accelerator=request.accelerator,
        shapes=request.neuron.shapes() if neuron else None,
        auto_cast_type=request.neuron.auto_cast_type if neuron else None,
        runtime_id=request.runtime_id,
    )


def key_for(request: CompileRequest, lora_sha256: str | None) -> str:
    inputs = key_inputs_for(request, lora_sha256)
    return keys.compile_key(
        base_model=inputs["base"], base_revision=inputs["baseRevision"], lora=inputs["lora"],
        lora_scale=inputs["loraScale"], accelerator=inputs["accelerator"],
        shapes=inputs["shapes"] or None, auto_cast_type=inputs["compiler"].get("autoCastType"),
        runtime_id=inputs["runtime"],
    )


def _versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for name in _VERSIONED:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return found


def _load_spec(path: str) -> DeploymentSpec:
    from sdxl_workloads.spec_loading import load_manifest

    return DeploymentSpec.from_dict(load_manifest(path))


def run(args: argparse.Namespace) -> int:
    started = time.monotonic()
    spec = _load_spec(args.spec)
    request = resolve_request(spec, args)
    _progress("resolving", f"accelerator {request.accelerator}, base {request.base_model}")

    # The key first: with --key (the operator's case) a finished artifact is found before the LoRA
    # is even fetched. Without it, the key pins the LoRA file's own digest.
    lora_file: Path | None = None
    lora_sha: str | None = request.lora_sha256
    if request.key is None:
        lora_file, lora_sha = _fetch_lora(request)
    key = request.key or key_for(request, lora_sha)
    relpath = f"{COMPILED_PREFIX}/{key}"

    with storage.Output(request.store) as out:
        if out.exists(f"{relpath}/{COMPLETE_MARKER}"):
            protocol.emit_event("log", message=f"{out.uri_of(relpath)} is complete; nothing to do")
            protocol.report_success(
                {"compiled": out.uri_of(relpath)},
                {"key": key, "cacheHit": True, "seconds": round(time.monotonic() - started, 3)},
                args.termination_log,
            )
            return 0
        storage.check_writable(request.store)
        if lora_file is None:
            lora_file, lora_sha = _fetch_lora(request)
        assert lora_sha is not None

        lora_file = lora_input.stage_lora_file(lora_file, out.local_dir / "inputs" / "lora")
        resolved_base = storage.resolve_model(request.base_model)
        _progress("loading", f"checking that {request.lora_uri} fits {request.base_model}")
        matrices = lora_input.check_lora_fits_base(lora_file, resolved_base, request.base_revision,
                                                 base_label=request.base_model, lora_label=request.lora_uri)
        stage_dir = out.local_dir / relpath
        stage_dir.mkdir(parents=True)
        work_started = time.monotonic()
        details = _build(request, resolved_base, lora_file, stage_dir)
        info = {
            "key": key,
            "accelerator": request.accelerator,
            "baseModel": request.base_model,
            "baseModelRevision": request.base_revision or keys.DEFAULT_REVISION,
            "lora": request.lora_uri,
            "loraSha256": lora_sha,
            "loraMatrices": matrices,
            "loraScale": request.lora_scale,
            "runtimeId": request.runtime_id,
            "versions": _versions(),
            "durationSeconds": round(time.monotonic() - work_started, 3),
            "createdAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            **details,
        }
        if request.key is None:
            info["keyInputs"] = key_inputs_for(request, lora_sha)
        (stage_dir / INFO_FILE).write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")

        _progress("publishing", f"publishing to {out.uri_of(relpath)}")
        out.publish(relpath)
        # Only now, with every other file in place, the marker that makes the artifact usable.
        (stage_dir / COMPLETE_MARKER).write_text(key + "\n")
        out.publish(f"{relpath}/{COMPLETE_MARKER}")
        protocol.report_success(
            {"compiled": out.uri_of(relpath)},
            {"key": key, "cacheHit": False, "seconds": round(time.monotonic() - started, 3)},
            args.termination_log,
        )
    return 0


def _fetch_lora(request: CompileRequest) -> tuple[Path, str]:
    """The local LoRA file and its sha256, checked against a digest given ahead."""
    try:
        local = storage.local_input(request.lora_uri)
    except WorkloadError as err:
        if err.reason != "InvalidInput":
            raise
        raise WorkloadError("InvalidInput", f"lora: {err.message}; give the URI of a LoRA safetensors file "
                                            f"(e.g. <fine-tune output>/lora/{lora_input.DEFAULT_WEIGHT_NAME})"
                            ) from err
    lora_file = lora_input.locate_lora_file(local)
    lora_input.check_is_lora(lora_file)
    sha = lora_input.file_sha256(lora_file)
    if request.lora_sha256 and request.lora_sha256 != sha:
        raise WorkloadError("InvalidInput", f"lora: {request.lora_uri} has sha256 {sha}, but {request.lora_sha256} "
                                            "was expected (spec.loraSha256 / --lora-sha256); the file changed "
                                            "since the digest was recorded")
    return lora_file, sha


def _build(request: CompileRequest, base: str, lora_file: Path, stage_dir: Path) -> dict[str, Any]:
    """Write the servable folder into `stage_dir`; returns what compile_info.json should add."""
    if request.accelerator == "neuron":
        return _compile_neuron(request, base, lora_file, stage_dir)
    return _prepare(request, base, lora_file, stage_dir)


def _prepare(request: CompileRequest, base: str, lora_file: Path, stage_dir: Path) -> dict[str, Any]:
    from sdxl_workloads import pipeline_prepare

    _progress("loading", f"loading {request.base_model}")
    pipe = pipeline_prepare.load_base_pipeline(base, request.base_revision)
    _progress("fusing", f"fusing {lora_file.name} at scale {request.lora_scale}")
    pipeline_prepare.fuse_lora(pipe, lora_file, request.lora_scale)
    _progress("saving", "saving the fused pipeline")
    dtype = pipeline_prepare.save_prepared_pipeline(pipe, stage_dir, request.accelerator)
    return {"format": "diffusers", "torchDtype": dtype}


def _compile_neuron(request: CompileRequest, base: str, lora_file: Path, stage_dir: Path) -> dict[str, Any]:
    from sdxl_workloads import neuron_export

    n = request.neuron
    message = (f"compiling for Inferentia2 at {n.width}x{n.height}, batch {n.batch_size} "
               f"x {n.num_images_per_prompt} images, {n.auto_cast_type} (tens of minutes)")
    _progress("compiling", message)
    try:
        with _heartbeat("compiling", message):
            neuron_export.export_neuron_pipeline(
                base_model=base, revision=request.base_revision, lora_file=lora_file,
                lora_scale=request.lora_scale, batch_size=n.batch_size, height=n.height, width=n.width,
                num_images_per_prompt=n.num_images_per_prompt, auto_cast_type=n.auto_cast_type,
                output_dir=stage_dir,
            )
    except (WorkloadError, MemoryError):
        raise
    except Exception as err:
        text = str(err)
        if protocol.is_out_of_memory(err) or "failed with -9" in text or "F137" in text:
            # neuronx-cc killed by the kernel: the classic sign of too little host memory.
            raise WorkloadError("OutOfMemory", f"the Neuron compiler ran out of host memory ({err}); "
                                               "compile on a node with at least 64 GiB") from err
        raise WorkloadError("CompileFailed", f"Neuron compile failed: {type(err).__name__}: {err}") from err
    _progress("saving", "compiled model written")
    return {
        "format": "neuron",
        "shapes": n.shapes(),
        "compiler": {"autoCast": neuron_export.AUTO_CAST, "autoCastType": n.auto_cast_type,
                     "target": neuron_export.COMPILE_TARGET},
        "instanceType": n.instance_type,
    }


if __name__ == "__main__":  # pragma: no cover - the CLI is the entry point
    from sdxl_workloads.cli import main

    sys.exit(main(["compile", *sys.argv[1:]]))
