"""`sdxl-workload serve --spec FILE [--model FOLDER]`: the inference server process.

What to serve and how comes from the SDXLDeployment spec (the operator's resolved spec, or a
manifest by hand): the accelerator, the LoRA and its scale, batching, queue and timeout, the API key
it names, the adapters' limits. Flags carry only what a spec does not hold: where to listen, the
compiled or prepared folder (whose LoRA is already fused), the mounted key and adapters files.

uvicorn runs the app at once, so /healthz answers while the weights load on a background
thread (/readyz turns 200 when they are in). On SIGTERM (a pod being stopped) uvicorn stops
accepting connections, lets the requests in progress finish, then the app drains its queue, and
the process exits 0. A model that fails to load stops the server with a failure result, so the
pod's restart and termination message say why.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import threading
from typing import Any

from sdxl_workloads.protocol import WorkloadError
from sdxl_workloads.server.auth import read_api_key
from sdxl_workloads.server.backends import Backend
from sdxl_workloads.server.model import ServedModel
from sdxl_workloads.server.settings import ServerSettings
from sdxl_workloads.spec.deployment_spec import DeploymentSpec, load_deployment_spec

log = logging.getLogger("sdxl_workloads.serve")

# ServerSettings field -> what a user sets, for error messages.
FIELD_NAMES = {"max_batch": "spec.server.maxBatch", "queue_size": "spec.server.queueSize",
               "request_timeout": "spec.server.requestTimeoutSeconds", "api_key": "--api-key-file",
               "max_steps": "--max-steps", "max_images": "--max-images"}
# With --adapters and a spec that says nothing of them: the CRD's defaults of spec.adapters.
DEFAULT_RESIDENT_ADAPTERS = 8
DEFAULT_MAX_ADAPTER_RANK = 64


def load_spec(path: str) -> DeploymentSpec:
    """The SDXLDeployment spec the server runs (a manifest, its bare spec, or the operator's resolved spec)."""
    from sdxl_workloads.spec.spec_loading import load_manifest

    return load_deployment_spec(load_manifest(path))


def build_settings(spec: DeploymentSpec, args: argparse.Namespace) -> ServerSettings:
    api_key_file = getattr(args, "api_key_file", None)
    if spec.auth is not None and not api_key_file:
        raise WorkloadError("InvalidInput", f"spec.auth: the server requires the key {spec.auth.api_key_secret_key!r} "
                                            f"of Secret {spec.auth.api_key_secret!r}; pass --api-key-file with the "
                                            "file it is mounted as")
    api_key = read_api_key(api_key_file) if api_key_file else None
    try:
        return ServerSettings(max_batch=spec.server.max_batch, queue_size=spec.server.queue_size,
                              request_timeout=float(spec.server.request_timeout_seconds), api_key=api_key,
                              max_steps=getattr(args, "max_steps", 150), max_images=getattr(args, "max_images", 8))
    except ValueError as err:
        message = str(err)
        for field, name in FIELD_NAMES.items():
            message = message.replace(field, name)
        raise WorkloadError("InvalidInput", message) from err


def served_model(spec: DeploymentSpec, args: argparse.Namespace) -> tuple[str, str | None]:
    """(model, LoRA applied on top of it): the --model folder alone (its LoRA is fused in it), else the
    spec's baseModel with the spec's lora."""
    model = getattr(args, "model", None)
    if model:
        return model, None
    if not spec.base_model:
        hint = " (spec.fineTune is resolved by the operator, which passes --model)" if spec.fine_tune else ""
        raise WorkloadError("InvalidInput", f"spec.baseModel: nothing to serve; set spec.baseModel (and spec.lora) "
                                            f"or pass --model with a compiled or prepared folder{hint}")
    return spec.base_model, spec.lora


def build_backend(spec: DeploymentSpec, args: argparse.Namespace) -> Backend:
    model, lora = served_model(spec, args)
    if spec.accelerator == "neuron":
        if getattr(args, "adapters", None):
            raise WorkloadError("InvalidInput",
                                "--adapters cannot be used with spec.accelerator neuron: a Neuron model has its one LoRA "
                                "fused at compile time; serve each fine-tune as its own compiled model")
        if not getattr(args, "model", None):
            raise WorkloadError("InvalidInput",
                                "spec.accelerator neuron serves a compiled model: pass --model with the folder "
                                "`sdxl-workload compile` published (its LoRA is fused at compile time)")
        from sdxl_workloads.server.neuron_backend import NeuronBackend

        return NeuronBackend(model)
    device = "cuda" if spec.accelerator == "nvidia" else "cpu"
    if getattr(args, "adapters", None):
        return build_adapter_backend(spec, args, model, lora, device)
    if spec.adapters is not None:
        raise WorkloadError("InvalidInput", "spec.adapters: a set of fine-tunes is served from an adapters file; "
                                            "pass --adapters FILE")
    if getattr(args, "compile_unet", False):
        raise WorkloadError("InvalidInput", "--compile-unet applies to --adapters only (a swap of adapters never "
                                            "recompiles; a single fused LoRA needs no hot-swap)")
    from sdxl_workloads.server.diffusers_backend import DiffusersBackend

    return DiffusersBackend(model, lora=lora, lora_scale=spec.lora_scale, device=device)


def build_adapter_backend(spec: DeploymentSpec, args: argparse.Namespace, model: str, lora: str | None,
                          device: str) -> Backend:
    """Several fine-tunes behind one base pipeline, from the --adapters file."""
    from sdxl_workloads.server.adapter_backend import MultiAdapterBackend
    from sdxl_workloads.server.adapters_file import read_adapters

    if lora:
        raise WorkloadError("InvalidInput", "spec.lora and --adapters exclude each other: with --adapters, requests "
                                            "choose the LoRA; list the single one in the file to serve it too")
    if spec.lora_scale != 1.0:
        raise WorkloadError("InvalidInput", "spec.loraScale applies to spec.lora only; with --adapters each adapter "
                                            "is served at the strength it was trained with")
    if not args.adapters_refresh > 0:
        raise WorkloadError("InvalidInput", f"--adapters-refresh must be > 0 seconds, got {args.adapters_refresh}")
    resident = spec.adapters.resident if spec.adapters else DEFAULT_RESIDENT_ADAPTERS
    max_rank = spec.adapters.max_rank if spec.adapters else DEFAULT_MAX_ADAPTER_RANK
    return MultiAdapterBackend(model, read_adapters(args.adapters), resident=resident, max_rank=max_rank,
                               device=device, compile_unet=args.compile_unet)


async def _load_in_background(model: ServedModel) -> None:
    """model.load() on a daemon thread: a SIGTERM during a long load must not wait for it."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()

    def settle(error: BaseException | None) -> None:
        if done.done():
            return
        if error is None:
            done.set_result(None)
        else:
            done.set_exception(error)

    def target() -> None:
        error: BaseException | None = None
        try:
            model.load()
        except BaseException as err:
            error = err
        loop.call_soon_threadsafe(settle, error)

    threading.Thread(target=target, name="model-load", daemon=True).start()
    await done


def uvicorn_config(app: Any, settings: ServerSettings, host: str, port: int, log_level: str = "info") -> Any:
    """How uvicorn runs the app, in one place (the process and the tests of hostile clients)."""
    import uvicorn

    from sdxl_workloads.server.read_deadlines import HeaderDeadlineH11Protocol

    return uvicorn.Config(
        app, host=host, port=port, log_level=log_level,
        # h11 (pure Python, in every image) with a deadline on request headers; the body's is
        # the app's BodyReadDeadline.
        http=HeaderDeadlineH11Protocol.with_header_timeout(settings.header_timeout),
        # Idle kept-alive connections are closed after this.
        timeout_keep_alive=5,
        # Long enough for a request that has just started to finish before shutdown gives up.
        timeout_graceful_shutdown=int(settings.request_timeout) + 5,
    )


async def serve(model: ServedModel, settings: ServerSettings, host: str, port: int,
                adapters_file: str | None = None, adapters_refresh: float = 10.0) -> None:
    import uvicorn

    from sdxl_workloads.server.app import create_app

    server = uvicorn.Server(uvicorn_config(create_app(model, settings), settings, host, port))
    failure: list[BaseException] = []

    async def load() -> None:
        try:
            await _load_in_background(model)
        except Exception as err:
            log.error("the model failed to load: %s", err)
            failure.append(err)
            server.should_exit = True

    loader = asyncio.get_running_loop().create_task(load())
    tasks = [loader]
    set_adapters = getattr(model.backend, "set_adapters", None)
    if adapters_file is not None and set_adapters is not None:
        from sdxl_workloads.server.adapters_file import follow_adapters

        tasks.append(asyncio.get_running_loop().create_task(
            follow_adapters(adapters_file, set_adapters, model.backend.adapter_names_map(),  # type: ignore[attr-defined]
                            every=adapters_refresh)))
    try:
        await server.serve()
    finally:
        for task in tasks:
            task.cancel()
    if failure:
        raise failure[0]


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    spec = load_spec(args.spec)
    settings = build_settings(spec, args)
    model = ServedModel(build_backend(spec, args))
    if spec.accelerator == "cpu":
        from sdxl_workloads.server.cpu_threads import configure_torch_threads

        log.info("torch uses %d CPU thread(s)", configure_torch_threads())
    # uvicorn re-raises the signal that stopped it once it has shut down gracefully, which would
    # turn a clean drain into "killed by SIGTERM" (exit 143). With a Python handler installed
    # before it starts, that re-raise lands here and the process exits 0.
    previous: dict[signal.Signals, Any] = {}
    for sig in (signal.SIGTERM, signal.SIGINT):
        previous[sig] = signal.signal(sig, lambda signum, frame: None)
    try:
        asyncio.run(serve(model, settings, args.host, args.port, adapters_file=getattr(args, "adapters", None),
                          adapters_refresh=getattr(args, "adapters_refresh", 10.0)))
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0
