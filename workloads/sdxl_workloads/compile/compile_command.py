"""`sdxl-workload compile`: turn base model + LoRA into the folder a server loads, once per key.

accelerator neuron: compile for Inferentia2 with optimum-neuron (neuron_export). nvidia / cpu:
"prepare" a fused diffusers pipeline (pipeline_prepare). Either way the result is published to
`<store>/compiled/<key>/` with `compile_info.json`, and a `COMPLETE` marker published after every
other file. An existing `COMPLETE` under the same key means the work is done: the command reports
success (`cacheHit: true`) without loading any model.

No digest a user gives is trusted: the LoRA is always fetched and hashed first, a `loraSha256`
(spec.loraSha256) that differs from the bytes is InvalidInput, and a finished artifact counts as a
hit only when its `compile_info.json` records that same sha256. So knowing another tenant's
digest (or compile key) never yields their compiled model: an artifact is shared only between
identical LoRA files.

Two compiles of one key may run at once (two deployments, a retried Job): the first to publish
wins; the other finds its artifact complete (before publishing, or when its own folder rename
loses) and reports it as a cache hit instead of failing.

Stages, each a progress line (step/totalSteps plus `stage` and `message`): resolving, loading,
fusing (prepare) or compiling (neuron), saving, publishing.
"""

from __future__ import annotations

import argparse
import json
import platform
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from sdxl_contract import accelerators, artifact_keys
from sdxl_contract import compile_key as keys
from sdxl_contract.compiled_artifacts import COMPLETE_MARKER, compiled_relpath
from sdxl_contract.digests import normalise_sha256
from sdxl_workloads import protocol
from sdxl_workloads.compile import lora_input
from sdxl_workloads.compile.runtime_id import default_runtime_id
from sdxl_workloads.models.references import local_input, resolve_model
from sdxl_workloads.protocol import WorkloadError
from sdxl_workloads.spec.deployment_spec import DeploymentSpec, NeuronSettings, load_deployment_spec
from sdxl_workloads.storage.errors import AlreadyPublished
from sdxl_workloads.storage.output import Output, check_writable

INFO_FILE = "compile_info.json"
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
    """Everything that decides the artifact: the spec, and the store, key and runtime the flags give."""

    base_model: str  # as written in the spec (part of the key)
    base_revision: str | None
    lora_uri: str
    lora_sha256: str | None  # known ahead (spec.loraSha256); verified against the file
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
    lora = spec.lora
    if not lora:
        hint = " (spec.fineTune is resolved by the operator, which writes spec.lora)" if spec.fine_tune else ""
        raise WorkloadError("InvalidInput", f"spec.lora: no LoRA to compile; set spec.lora{hint}")
    base = spec.base_model
    if not base:
        raise WorkloadError("InvalidInput", "spec.baseModel: required (the model the LoRA was trained on)")
    sha = spec.lora_sha256
    key = getattr(args, "key", None)
    if key is not None and not keys.is_compile_key(key):
        raise WorkloadError("InvalidInput", f"--key: must be 64 lowercase hexadecimal characters, got {key!r}")
    return CompileRequest(
        base_model=base,
        base_revision=spec.base_model_revision,
        lora_uri=lora,
        lora_sha256=normalise_sha256(sha) if sha else None,
        accelerator=spec.accelerator,
        neuron=spec.neuron_settings,
        lora_scale=spec.lora_scale,
        runtime_id=getattr(args, "runtime_id", None) or default_runtime_id(spec.accelerator),
        store=args.store,
        key=key,
    )


def key_inputs_for(request: CompileRequest, lora_sha256: str | None) -> dict[str, Any]:
    neuron = accelerators.profile_of(request.accelerator).compiles_for_fixed_shapes
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
    return keys.key_of_inputs(key_inputs_for(request, lora_sha256))


def _versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for name in _VERSIONED:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return found


def _load_spec(path: str) -> DeploymentSpec:
    from sdxl_workloads.spec.spec_loading import load_manifest

    return load_deployment_spec(load_manifest(path))


def run(args: argparse.Namespace) -> int:
    started = time.monotonic()
    spec = _load_spec(args.spec)
    request = resolve_request(spec, args)
    _progress("resolving", f"accelerator {request.accelerator}, base {request.base_model}")

    # The LoRA's bytes first, before any cache lookup: its sha256 is what a finished artifact must
    # have been built from (a digest or key given from outside only names where to look).
    lora_file, lora_sha = _fetch_lora(request)
    key = request.key or key_for(request, lora_sha)
    relpath = compiled_relpath(key)

    def cache_hit(out: Output) -> bool:
        if not _finished_for(out, relpath, lora_sha, request.lora_uri):
            return False
        protocol.emit_event("log", message=f"{out.uri_of(relpath)} is complete; nothing to do")
        protocol.report_success(
            {artifact_keys.COMPILED: out.uri_of(relpath)},
            {artifact_keys.COMPILE_KEY: key, artifact_keys.CACHE_HIT: True, "seconds": round(time.monotonic() - started, 3)},
            args.termination_log,
        )
        return True

    with Output(request.store) as out:
        if cache_hit(out):
            return 0
        check_writable(request.store)

        lora_file = lora_input.stage_lora_file(lora_file, out.local_dir / "inputs" / "lora")
        resolved_base = resolve_model(request.base_model)
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
        if cache_hit(out):  # another compile of this key finished while this one worked
            return 0
        try:
            out.publish(relpath)
        except AlreadyPublished:
            # Another compile's folder took the name first; it is whole (one rename). Reuse it once
            # its marker is there rather than overwrite it file by file under a server loading it.
            if _wait_for_marker(out, relpath) and cache_hit(out):
                return 0
            raise WorkloadError("StorageError", f"{out.uri_of(relpath)}: another compile of this key published "
                                                "its folder but not its COMPLETE marker; it may have "
                                                "crashed. Retry: an incomplete artifact is rebuilt") from None
        # Only now, with every other file in place, the marker that makes the artifact usable.
        (stage_dir / COMPLETE_MARKER).write_text(key + "\n")
        out.publish(f"{relpath}/{COMPLETE_MARKER}")
        protocol.report_success(
            {artifact_keys.COMPILED: out.uri_of(relpath)},
            {artifact_keys.COMPILE_KEY: key, artifact_keys.CACHE_HIT: False, "seconds": round(time.monotonic() - started, 3)},
            args.termination_log,
        )
    return 0


# How long a compile that lost the publish race waits for the winner's COMPLETE marker (the
# winner publishes it right after its folder rename).
MARKER_WAIT_SECONDS = 60.0


def _wait_for_marker(out: Output, relpath: str, timeout: float = MARKER_WAIT_SECONDS) -> bool:
    deadline = time.monotonic() + timeout
    while not out.exists(f"{relpath}/{COMPLETE_MARKER}"):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.5)
    return True


def _finished_for(out: Output, relpath: str, lora_sha: str, lora_uri: str) -> bool:
    """Whether `relpath` holds a complete artifact built from the LoRA whose sha256 is `lora_sha`.

    A complete artifact built from other bytes (its key named by URI and the file changed since, or
    a key taken from elsewhere) is refused with InvalidInput naming both digests: serving it would
    serve another LoRA, and rebuilding over it would replace a model other servers may be loading.
    """
    if not out.exists(f"{relpath}/{COMPLETE_MARKER}"):
        return False
    try:
        info = json.loads(out.read_bytes(f"{relpath}/{INFO_FILE}"))
        recorded = info.get("loraSha256") if isinstance(info, dict) else None
    except WorkloadError as err:
        if err.reason != "InvalidInput":  # the store failed: say so, never rebuild over what may be fine
            raise
        recorded = None
    except ValueError:  # not JSON
        recorded = None
    if recorded is None:
        # Complete but without a readable record: rebuild it (publishing over it file by file).
        protocol.emit_event("log", message=f"{out.uri_of(relpath)} has no readable {INFO_FILE}; rebuilding")
        return False
    if recorded != lora_sha:
        raise WorkloadError("InvalidInput", f"lora: {lora_uri} has sha256 {lora_sha}, but the compiled artifact "
                                            f"{out.uri_of(relpath)} was built from a LoRA with sha256 {recorded}; "
                                            "the file changed since it was compiled. Set spec.loraSha256 to the "
                                            "new digest (a new compile key), or restore the original file")
    return True


def _fetch_lora(request: CompileRequest) -> tuple[Path, str]:
    """The local LoRA file and its sha256, checked against a digest given ahead."""
    try:
        local = local_input(request.lora_uri)
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
                                            "was expected (spec.loraSha256); the file changed "
                                            "since the digest was recorded")
    return lora_file, sha


def _build(request: CompileRequest, base: str, lora_file: Path, stage_dir: Path) -> dict[str, Any]:
    """Write the servable folder into `stage_dir`; returns what compile_info.json should add."""
    if accelerators.profile_of(request.accelerator).compiles_for_fixed_shapes:
        return _compile_neuron(request, base, lora_file, stage_dir)
    return _prepare(request, base, lora_file, stage_dir)


def _prepare(request: CompileRequest, base: str, lora_file: Path, stage_dir: Path) -> dict[str, Any]:
    from sdxl_workloads.compile import pipeline_prepare

    _progress("loading", f"loading {request.base_model}")
    pipe = pipeline_prepare.load_base_pipeline(base, request.base_revision)
    _progress("fusing", f"fusing {lora_file.name} at scale {request.lora_scale}")
    pipeline_prepare.fuse_lora(pipe, lora_file, request.lora_scale)
    _progress("saving", "saving the fused pipeline")
    dtype = pipeline_prepare.save_prepared_pipeline(pipe, stage_dir, request.accelerator)
    return {"format": "diffusers", "torchDtype": dtype}


def _compile_neuron(request: CompileRequest, base: str, lora_file: Path, stage_dir: Path) -> dict[str, Any]:
    from sdxl_workloads.models import neuron_export

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
        "compiler": {"autoCast": accelerators.NEURON.auto_cast, "autoCastType": n.auto_cast_type,
                     "target": neuron_export.COMPILE_TARGET},
        "instanceType": n.instance_type,
    }
