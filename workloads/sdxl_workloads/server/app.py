"""The HTTP API: `create_app(model, settings)` builds a FastAPI app around one served model.

No module-level app and no argument parsing here: `serve_command` builds the model and settings
from flags, and tests build apps with their own. Model loading is the caller's business (the
app only reports it), so /healthz answers while weights load and /readyz says 503 until done.
/readyz says ready or not and why in one word, nothing more: it needs no key, so it must not tell
an unauthenticated caller which model or LoRA is served (the log has that).

A client that disconnects gives up its work: a queued request leaves the queue, and a batch whose
every request has gone stops at the next denoising step (within a step's time, well under a second
on the devices we serve on).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI, Header, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException

from sdxl_workloads.server.auth import key_matches, presented_key
from sdxl_workloads.server.backends import GenerationParams
from sdxl_workloads.server.batcher import (
    Batcher,
    Draining,
    GenerationFailed,
    Outcome,
    QueueFull,
    RequestTimedOut,
)
from sdxl_workloads.server.body_limit import BodySizeLimit
from sdxl_workloads.server.content_negotiation import wants_png
from sdxl_workloads.server.images import encode_png, encode_png_base64
from sdxl_workloads.server.metrics import ServerMetrics
from sdxl_workloads.server.model import ServedModel
from sdxl_workloads.server.read_deadlines import BodyReadDeadline
from sdxl_workloads.server.schemas import (
    MAX_SEED,
    ErrorBody,
    GenerateRequest,
    GenerateResponse,
    OpenAIImage,
    OpenAIImageRequest,
    OpenAIImageResponse,
    Timings,
    request_models,
)
from sdxl_workloads.server.settings import ServerSettings

log = logging.getLogger(__name__)

ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody, "description": text} for code, text in {
        401: "missing or wrong API key",
        404: "the adapter named (`adapter`, or `model` in the OpenAI API) is not served here",
        406: "Accept: image/png with more than one image",
        408: "the request body did not arrive within the server's body timeout",
        413: "request body too large",
        422: "invalid request; `detail` names each field and what is wrong",
        429: "queue full; retry after the Retry-After header's seconds",
        503: "model not loaded yet, shutting down, or the generation failed (the message says which)",
        504: "no result within the server's request timeout",
    }.items()
}


class ApiError(HTTPException):
    """An error answer with a machine-readable kind and the rejection reason for metrics."""

    def __init__(self, status: int, kind: str, message: str, *, reason: str,
                 headers: dict[str, str] | None = None, detail: Any = None) -> None:
        super().__init__(status_code=status, detail=detail if detail is not None else message, headers=headers)
        self.kind = kind
        self.message = message
        self.reason = reason


def _field_error(field: str, message: str) -> ApiError:
    """A 422 shaped like FastAPI's own validation errors."""
    return ApiError(422, "invalid_request_error", f"{field}: {message}", reason="invalid",
                    detail=[{"loc": ["body", field], "msg": message, "type": "value_error"}])


def _describe_validation(errors: Sequence[Any]) -> str:
    parts = []
    for error in errors:
        loc = [str(piece) for piece in error.get("loc", ()) if piece != "body"]
        where = ".".join(loc) if loc else "body"
        if error.get("type") == "json_invalid":
            where = "body"
        parts.append(f"{where}: {error.get('msg', 'invalid')}")
    return "; ".join(parts) or "invalid request"


# nginx's code for "client closed request": recorded in logs, never seen by the client that left.
CLIENT_GONE = 499


async def _wait_for_disconnect(request: Request) -> None:
    """Return when the client has disconnected. Called after the body is read, when the only
    message the server can still deliver is `http.disconnect`."""
    while True:
        message = await request.receive()
        if message.get("type") == "http.disconnect":
            return
        await asyncio.sleep(0.1)  # a transport that repeats empty bodies must not spin the loop


def _error_json(status: int, detail: Any, kind: str, message: str,
                headers: Mapping[str, str] | None = None) -> JSONResponse:
    return JSONResponse(status_code=status, headers=dict(headers) if headers else None,
                        content={"detail": detail, "error": {"type": kind, "message": message}})


def create_app(model: ServedModel, settings: ServerSettings) -> FastAPI:
    metrics = ServerMetrics()

    def max_batch_images() -> int:
        own = model.limits.max_batch_images if model.ready else None
        return settings.max_batch if own is None else min(settings.max_batch, own)

    observers = getattr(model.backend, "observers", None)
    if observers is not None:  # a multi-adapter backend reports loads and evictions per adapter
        observers.append(metrics.adapter_event)

    batcher = Batcher(model.generate, queue_size=settings.queue_size, max_batch_images=max_batch_images,
                      on_change=metrics.queue_changed, on_batch=metrics.batch_done)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        batcher.start()
        yield
        # uvicorn has already waited for open requests; this finishes anything still queued.
        await batcher.drain(settings.effective_drain_timeout)

    app = FastAPI(
        title="SDXL inference server",
        description="Text-to-image with a fine-tuned Stable Diffusion XL (diffusers on CPU/NVIDIA, or "
                    "compiled for AWS Inferentia2).",
        version="1",
        lifespan=lifespan,
    )
    app.state.model = model
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.batcher = batcher
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes,
                       on_reject=lambda: metrics.reject("too_large"))
    app.add_middleware(BodyReadDeadline, timeout=settings.body_timeout,
                       on_timeout=lambda: metrics.reject("body_timeout"))

    @app.exception_handler(RequestValidationError)
    async def on_invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        metrics.reject("invalid")
        errors = [{k: v for k, v in error.items() if k in ("loc", "msg", "type")} for error in exc.errors()]
        return _error_json(422, errors, "invalid_request_error", _describe_validation(errors))

    @app.exception_handler(HTTPException)
    async def on_http_error(request: Request, exc: HTTPException) -> JSONResponse:
        if isinstance(exc, ApiError):
            metrics.reject(exc.reason)
            return _error_json(exc.status_code, exc.detail, exc.kind, exc.message, exc.headers)
        if exc.status_code == 413:
            return _error_json(413, exc.detail, "request_too_large", str(exc.detail))
        if exc.status_code == 408:
            return _error_json(408, exc.detail, "request_timeout", str(exc.detail), exc.headers)
        return _error_json(exc.status_code, exc.detail, "http_error", str(exc.detail), exc.headers)

    def require_key(authorization: str | None = Header(default=None, include_in_schema=False),
                    x_api_key: str | None = Header(default=None, include_in_schema=False)) -> None:
        if settings.api_key is None:
            return
        if not key_matches(settings.api_key, presented_key(authorization, x_api_key)):
            raise ApiError(401, "authentication_error",
                           "missing or wrong API key: send it as 'Authorization: Bearer <key>' or 'X-API-Key: <key>'",
                           reason="unauthorized", headers={"WWW-Authenticate": "Bearer"})

    def not_ready_error() -> ApiError:
        if model.error is not None:
            return ApiError(503, "model_unavailable", f"the model failed to load: {model.error}",
                            reason="not_ready")
        return ApiError(503, "model_loading", "the model is still loading; retry shortly",
                        reason="not_ready", headers={"Retry-After": "5"})

    def resolve(*, prompt: str, negative_prompt: str | None, steps: int | None, guidance: float | None,
                seed: int | None, width: int | None, height: int | None, num_images: int,
                size_field: str | None = None, adapter: str | None = None) -> GenerationParams:
        """Defaults filled in and checked against what the loaded model accepts."""
        if not model.ready:
            raise not_ready_error()
        if adapter is not None and not model.has_adapter(adapter):
            served = "this server serves one model and no adapters" if not model.serves_adapters else (
                "GET /v1/adapters lists the ones served; leave it out for the base model")
            raise ApiError(404, "not_found_error", f"unknown adapter {adapter!r}: {served}",
                           reason="unknown_adapter")
        limits = model.limits
        width = limits.default_width if width is None else width
        height = limits.default_height if height is None else height
        problem = limits.size_problem(width, height)
        if problem is not None:
            field, message = problem
            raise _field_error(size_field or field, message)
        return GenerationParams(
            prompt=prompt, negative_prompt=negative_prompt,
            num_inference_steps=settings.default_steps if steps is None else steps,
            guidance_scale=settings.default_guidance if guidance is None else guidance,
            width=width, height=height,
            seed=secrets.randbelow(MAX_SEED + 1) if seed is None else seed,
            num_images=num_images, adapter=adapter)

    async def run(params: GenerationParams, request: Request) -> Outcome[Any]:
        """The request's result; or, once its client has disconnected, its work withdrawn and a 499
        (logged, never delivered)."""
        submit = asyncio.ensure_future(batcher.submit(params, images=params.num_images, key=params.batch_key(),
                                                      timeout=settings.request_timeout))
        gone = asyncio.ensure_future(_wait_for_disconnect(request))
        try:
            done, _ = await asyncio.wait({submit, gone}, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            submit.cancel()
            gone.cancel()
            raise
        gone.cancel()
        if submit not in done:
            submit.cancel()  # Batcher.submit withdraws the job: out of the queue, or marked for stopping
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await submit
            log.info("a client disconnected; its request was cancelled")
            raise ApiError(CLIENT_GONE, "client_closed_request", "the client disconnected; its work was cancelled",
                           reason="client_gone")
        try:
            return submit.result()
        except QueueFull as err:
            raise ApiError(429, "rate_limit_error", str(err), reason="queue_full",
                           headers={"Retry-After": str(err.retry_after)}) from None
        except RequestTimedOut as err:
            raise ApiError(504, "timeout", str(err), reason="timeout") from None
        except Draining as err:
            raise ApiError(503, "shutting_down", str(err), reason="shutting_down",
                           headers={"Connection": "close"}) from None
        except GenerationFailed as err:
            raise ApiError(503, "generation_failed", str(err), reason="generation_failed") from None

    def answered(params: GenerationParams, seconds: float) -> None:
        if model.serves_adapters:
            metrics.adapter_answered(params.adapter, seconds)

    def server_timing(outcome: Outcome[Any], encode_seconds: float) -> str:
        return (f"queue;dur={outcome.queue_seconds * 1000:.1f}, inference;dur={outcome.run_seconds * 1000:.1f}, "
                f"encode;dur={encode_seconds * 1000:.1f}")

    @app.get("/healthz", summary="the process is up")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", summary="the model is loaded and the server takes work",
             responses={503: {"model": ErrorBody, "description": "loading, failed, or shutting down"}})
    async def readyz() -> JSONResponse:
        if batcher.closing:
            return _error_json(503, "shutting_down", "shutting_down", "the server is shutting down")
        if model.error is not None:
            return _error_json(503, "failed", "model_unavailable",
                               "the model failed to load; the server's log and termination message say why")
        if not model.ready:
            return _error_json(503, "loading", "model_loading", "the model is still loading; retry shortly",
                               {"Retry-After": "5"})
        return JSONResponse({"status": "ready"})

    @app.get("/v1/adapters", summary="the adapters (fine-tunes) this server serves, and those resident in memory",
             dependencies=[Depends(require_key)])
    async def adapters() -> dict[str, list[str]]:
        names = getattr(model.backend, "adapter_names", None)
        resident = getattr(model.backend, "resident_names", None)
        return {"adapters": names() if names is not None else [],
                "resident": resident() if resident is not None else []}

    @app.get("/metrics", summary="Prometheus metrics", response_class=Response)
    async def prometheus_metrics() -> Response:
        metrics.model_ready.set(1 if model.ready else 0)
        body, content_type = metrics.render()
        return Response(content=body, media_type=content_type)

    # The bodies carry this server's caps (settings.max_steps / max_images) in their schema.
    generate_body, openai_body = request_models(settings.max_steps, settings.max_images)

    async def generate(body: GenerateRequest, request: Request) -> Any:
        began = time.perf_counter()
        png_only = wants_png(request.headers.get("accept"))
        if png_only and body.num_images != 1:
            raise ApiError(406, "invalid_request_error",
                           f"Accept: image/png returns one image; ask for num_images 1 (got {body.num_images}) "
                           "or accept application/json", reason="not_acceptable")
        params = resolve(prompt=body.prompt, negative_prompt=body.negative_prompt,
                         steps=body.num_inference_steps, guidance=body.guidance_scale, seed=body.seed,
                         width=body.width, height=body.height, num_images=body.num_images,
                         adapter=body.adapter)
        outcome = await run(params, request)
        encode_began = time.perf_counter()
        if png_only:
            png = await asyncio.to_thread(encode_png, outcome.value[0])
            encode_seconds = time.perf_counter() - encode_began
            total = time.perf_counter() - began
            metrics.request_latency.labels(endpoint="generate").observe(total)
            answered(params, total)
            metrics.images_generated.inc(1)
            return Response(content=png, media_type="image/png", headers={
                "X-Seed": str(params.seed), "Server-Timing": server_timing(outcome, encode_seconds)})
        images = await asyncio.to_thread(encode_png_base64, outcome.value)
        encode_seconds = time.perf_counter() - encode_began
        total = time.perf_counter() - began
        metrics.request_latency.labels(endpoint="generate").observe(total)
        answered(params, total)
        metrics.images_generated.inc(len(images))
        response = GenerateResponse(
            images=images, seed=params.seed, seeds=params.image_seeds(), width=params.width,
            height=params.height, num_inference_steps=params.num_inference_steps,
            guidance_scale=params.guidance_scale, batch_images=outcome.batch_images,
            timings=Timings(queue_seconds=outcome.queue_seconds, inference_seconds=outcome.run_seconds,
                            encode_seconds=encode_seconds, total_seconds=total))
        return JSONResponse(response.model_dump(), headers={"Server-Timing": server_timing(outcome, encode_seconds)})

    async def openai_generations(body: OpenAIImageRequest, request: Request) -> Any:
        began = time.perf_counter()
        dimensions = body.dimensions()
        params = resolve(prompt=body.prompt, negative_prompt=None, steps=None, guidance=None, seed=None,
                         width=dimensions[0] if dimensions else None,
                         height=dimensions[1] if dimensions else None,
                         num_images=body.n, size_field="size",
                         # A one-model server ignores `model` (clients send "dall-e-3" and the like).
                         adapter=body.model if model.serves_adapters else None)
        outcome = await run(params, request)
        images = await asyncio.to_thread(encode_png_base64, outcome.value)
        metrics.request_latency.labels(endpoint="openai").observe(time.perf_counter() - began)
        answered(params, time.perf_counter() - began)
        metrics.images_generated.inc(len(images))
        response = OpenAIImageResponse(created=int(time.time()), data=[OpenAIImage(b64_json=i) for i in images])
        return JSONResponse(response.model_dump())

    # Annotations are strings under `from __future__ import annotations`; FastAPI must see the
    # classes built above, which no module global names.
    generate.__annotations__["body"] = generate_body
    openai_generations.__annotations__["body"] = openai_body
    app.post(
        "/v1/generate",
        summary="generate images (JSON with base64 PNGs, or one PNG with Accept: image/png)",
        response_model=GenerateResponse,
        responses={**ERROR_RESPONSES, 200: {"content": {"image/png": {}},
                                            "description": "JSON, or the PNG itself with Accept: image/png"}},
        dependencies=[Depends(require_key)],
    )(generate)
    app.post(
        "/v1/images/generations",
        summary="OpenAI images API (subset: prompt, n, size, response_format b64_json)",
        response_model=OpenAIImageResponse,
        responses=ERROR_RESPONSES,
        dependencies=[Depends(require_key)],
    )(openai_generations)
    return app
