"""`sdxl-workload serve`: the inference server process.

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

log = logging.getLogger("sdxl_workloads.serve")

# ServerSettings field -> the flag a user sets, for error messages.
FLAG_NAMES = {"max_batch": "--max-batch", "queue_size": "--queue-size", "request_timeout": "--request-timeout",
              "api_key": "--api-key-file", "max_steps": "--max-steps", "max_images": "--max-images"}


def build_settings(args: argparse.Namespace) -> ServerSettings:
    api_key = read_api_key(args.api_key_file) if getattr(args, "api_key_file", None) else None
    try:
        return ServerSettings(max_batch=args.max_batch, queue_size=args.queue_size,
                              request_timeout=args.request_timeout, api_key=api_key,
                              max_steps=getattr(args, "max_steps", 150), max_images=getattr(args, "max_images", 8))
    except ValueError as err:
        message = str(err)
        for field, flag in FLAG_NAMES.items():
            message = message.replace(field, flag)
        raise WorkloadError("InvalidInput", message) from err


def build_backend(args: argparse.Namespace) -> Backend:
    if not 0 <= args.lora_scale <= 2:
        raise WorkloadError("InvalidInput", f"--lora-scale must be within 0..2, got {args.lora_scale}")
    if args.accelerator == "neuron":
        if getattr(args, "adapters", None):
            raise WorkloadError("InvalidInput",
                                "--adapters cannot be used with --accelerator neuron: a Neuron model has its one LoRA "
                                "fused at compile time; serve each fine-tune as its own compiled model")
        if args.lora:
            raise WorkloadError("InvalidInput",
                                "--lora cannot be used with --accelerator neuron: a Neuron model has its LoRA "
                                "fused at compile time; serve the compiled folder alone")
        from sdxl_workloads.server.neuron_backend import NeuronBackend

        return NeuronBackend(args.model)
    device = "cuda" if args.accelerator == "nvidia" else "cpu"
    if getattr(args, "adapters", None):
        return build_adapter_backend(args, device)
    if getattr(args, "compile_unet", False):
        raise WorkloadError("InvalidInput", "--compile-unet applies to --adapters only (a swap of adapters never "
                                            "recompiles; a single fused LoRA needs no hot-swap)")
    from sdxl_workloads.server.diffusers_backend import DiffusersBackend

    return DiffusersBackend(args.model, lora=args.lora, lora_scale=args.lora_scale, device=device)


def build_adapter_backend(args: argparse.Namespace, device: str) -> Backend:
    """Several fine-tunes behind one base pipeline, from the --adapters file."""
    from sdxl_workloads.server.adapter_backend import MultiAdapterBackend
    from sdxl_workloads.server.adapters_file import read_adapters

    if args.lora:
        raise WorkloadError("InvalidInput", "--lora and --adapters exclude each other: with --adapters, requests "
                                            "choose the LoRA; list the single one in the file to serve it too")
    if args.lora_scale != 1.0:
        raise WorkloadError("InvalidInput", "--lora-scale applies to --lora only; with --adapters each adapter is "
                                            "served at the strength it was trained with")
    for flag, value, low in (("--resident-adapters", args.resident_adapters, 1),
                             ("--max-adapter-rank", args.max_adapter_rank, 1)):
        if value < low:
            raise WorkloadError("InvalidInput", f"{flag} must be >= {low}, got {value}")
    if not args.adapters_refresh > 0:
        raise WorkloadError("InvalidInput", f"--adapters-refresh must be > 0 seconds, got {args.adapters_refresh}")
    return MultiAdapterBackend(args.model, read_adapters(args.adapters), resident=args.resident_adapters,
                               max_rank=args.max_adapter_rank, device=device, compile_unet=args.compile_unet)


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
    settings = build_settings(args)
    model = ServedModel(build_backend(args))
    if args.accelerator == "cpu":
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
