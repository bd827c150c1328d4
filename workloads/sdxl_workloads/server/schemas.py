"""Request and response bodies of the HTTP API (pydantic; they are also the OpenAPI schema).

Bounds here are the ones that hold for every model. What depends on the loaded model (the
image size range, a Neuron model's one compiled size) is checked against `ModelLimits` once the
request is valid, and answered with the same 422 shape.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, create_model, field_validator

MAX_PROMPT_CHARS = 2000  # CLIP reads 77 tokens; this bounds tokenizer work, not meaning
MAX_IMAGES = 8
MAX_STEPS = 150
MAX_GUIDANCE = 30.0
MAX_SIDE = 2048
MAX_SEED = 2**32 - 1
SIZE_PATTERN = re.compile(r"^(\d{1,5})x(\d{1,5})$")


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must contain non-whitespace text")
    return value


class GenerateRequest(BaseModel):
    """`POST /v1/generate`."""

    # A misspelt field would otherwise be ignored silently and its default used.
    model_config = ConfigDict(extra="forbid")

    prompt: str = Field(min_length=1, max_length=MAX_PROMPT_CHARS, description="what to draw")
    negative_prompt: str | None = Field(
        default=None, max_length=MAX_PROMPT_CHARS, description="what to steer away from")
    num_inference_steps: int | None = Field(
        default=None, ge=1, le=MAX_STEPS, description="denoising steps (default: the server's --default-steps)")
    guidance_scale: float | None = Field(
        default=None, ge=0.0, le=MAX_GUIDANCE, allow_inf_nan=False,
        description="classifier-free guidance strength; <= 1 turns guidance off (default: the server's)")
    seed: int | None = Field(
        default=None, ge=0, le=MAX_SEED,
        description="random seed of the first image (image k uses seed + k); random when absent")
    width: int | None = Field(
        default=None, ge=8, le=MAX_SIDE, multiple_of=8, description="pixels; default: the model's size")
    height: int | None = Field(
        default=None, ge=8, le=MAX_SIDE, multiple_of=8, description="pixels; default: the model's size")
    num_images: int = Field(default=1, ge=1, le=MAX_IMAGES, description="images to generate for this prompt")
    adapter: str | None = Field(
        default=None, min_length=1, max_length=253,
        description="the fine-tune (LoRA adapter) to apply, on a server that serves several; none = the base model")

    @field_validator("prompt")
    @classmethod
    def _prompt_text(cls, value: str) -> str:
        return _not_blank(value)


class Timings(BaseModel):
    queue_seconds: float = Field(description="waiting for the model")
    inference_seconds: float = Field(description="the pipeline call (shared by a micro-batch)")
    encode_seconds: float = Field(description="PNG encoding")
    total_seconds: float = Field(description="admission to answer")


class GenerateResponse(BaseModel):
    images: list[str] = Field(description="base64-encoded PNG files, one per image")
    seed: int = Field(description="the seed of the first image; image k used seed + k")
    seeds: list[int]
    width: int
    height: int
    num_inference_steps: int
    guidance_scale: float
    batch_images: int = Field(description="images in the pipeline call that made these (micro-batching)")
    timings: Timings


class OpenAIImageRequest(BaseModel):
    """`POST /v1/images/generations`: the subset of OpenAI's images API this server honours.

    Unknown fields (`quality`, `style`, `user`, ...) are accepted and ignored so that existing
    OpenAI clients work unchanged. `model` names the adapter on a multi-adapter server.
    """

    model_config = ConfigDict(extra="ignore")

    prompt: str = Field(min_length=1, max_length=MAX_PROMPT_CHARS)
    n: int = Field(default=1, ge=1, le=MAX_IMAGES, description="number of images")
    size: str | None = Field(default=None, description='"WIDTHxHEIGHT", e.g. "1024x1024"; default: the model\'s size')
    response_format: Literal["b64_json"] | None = Field(
        default=None, description='only "b64_json": this server keeps no images to link to')
    model: str | None = Field(
        default=None,
        description="on a server of several fine-tunes: the one (LoRA adapter) to apply, none = the base model; "
                    "ignored by a server of one model, so existing OpenAI clients work unchanged")

    @field_validator("prompt")
    @classmethod
    def _prompt_text(cls, value: str) -> str:
        return _not_blank(value)

    @field_validator("response_format", mode="before")
    @classmethod
    def _only_b64(cls, value: object) -> object:
        if value is not None and value != "b64_json":
            raise ValueError(
                f"response_format {value!r} is not supported: this server keeps no images to link to; "
                'use "b64_json" (the default)')
        return value

    @field_validator("size")
    @classmethod
    def _size_shape(cls, value: str | None) -> str | None:
        if value is None:
            return None
        match = SIZE_PATTERN.match(value)
        if match is None:
            raise ValueError(f'must look like "WIDTHxHEIGHT" (e.g. "1024x1024"), got {value!r}')
        for side in (int(match.group(1)), int(match.group(2))):
            if side % 8 or not 8 <= side <= MAX_SIDE:
                raise ValueError(f"both sides must be multiples of 8 within 8..{MAX_SIDE}, got {value!r}")
        return value

    def dimensions(self) -> tuple[int, int] | None:
        if self.size is None:
            return None
        width, height = self.size.split("x")
        return int(width), int(height)


class OpenAIImage(BaseModel):
    b64_json: str


class OpenAIImageResponse(BaseModel):
    created: int = Field(description="Unix time of the answer")
    data: list[OpenAIImage]


class ErrorBody(BaseModel):
    """Every error answer: FastAPI's `detail` plus an OpenAI-style `error` object."""

    detail: object
    error: dict[str, str]


def request_models(max_steps: int, max_images: int) -> tuple[type[GenerateRequest], type[OpenAIImageRequest]]:
    """The request bodies with this server's own caps on steps and images per request, so the
    OpenAPI schema states the limits the server enforces (an operator lowers them to bound
    the cost of one request)."""
    generate = create_model(
        "GenerateRequest", __base__=GenerateRequest,
        num_inference_steps=(int | None, Field(
            default=None, ge=1, le=max_steps,
            description=f"denoising steps, at most {max_steps} (default: the server's --default-steps)")),
        num_images=(int, Field(default=1, ge=1, le=max_images,
                               description=f"images to generate for this prompt, at most {max_images}")),
    )
    openai = create_model(
        "OpenAIImageRequest", __base__=OpenAIImageRequest,
        n=(int, Field(default=1, ge=1, le=max_images, description=f"number of images, at most {max_images}")),
    )
    return generate, openai
