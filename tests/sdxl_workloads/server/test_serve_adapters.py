"""Many fine-tunes behind one server: adapters chosen per request and applied to the resident base
pipeline (fused into the weights on a switch, or hot-swapped into a compiled UNet with zero
recompiles), kept resident by LRU."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from sdxl_workloads.server.adapter_backend import AdapterLoadFailed, MultiAdapterBackend, UnknownAdapter
from sdxl_workloads.server.app import create_app
from sdxl_workloads.server.backends import GenerationParams, ShouldStop
from sdxl_workloads.server.diffusers_backend import DiffusersBackend
from sdxl_workloads.server.model import ServedModel
from sdxl_workloads.server.settings import ServerSettings

TARGETS = ["to_q", "to_k", "to_v", "to_out.0"]


def params(adapter: str | None, seed: int = 11) -> GenerationParams:
    return GenerationParams(prompt="a photo of sks person", negative_prompt=None, num_inference_steps=2,
                            guidance_scale=5.0, width=64, height=64, seed=seed, adapter=adapter)


def make_lora(model: Path, out: Path, *, rank: int, seed: int, text_encoder: bool = False) -> Path:
    """A LoRA with random (non-zero) weights saved the way the trainer saves one (diffusers format
    with peft metadata); with `text_encoder`, LoRAs on both text encoders as well."""
    import torch
    from diffusers import StableDiffusionXLPipeline
    from peft import LoraConfig, inject_adapter_in_model
    from peft.utils import get_peft_model_state_dict

    pipe = StableDiffusionXLPipeline.from_pretrained(str(model))
    torch.manual_seed(seed)
    config = LoraConfig(r=rank, lora_alpha=rank, init_lora_weights=False, target_modules=TARGETS)
    pipe.unet.add_adapter(config)
    layers: dict[str, Any] = {"unet_lora_layers": get_peft_model_state_dict(pipe.unet),
                              "unet_lora_adapter_metadata": config.to_dict()}
    if text_encoder:
        te_config = LoraConfig(r=rank, lora_alpha=rank, init_lora_weights=False,
                               target_modules=["q_proj", "k_proj", "v_proj", "out_proj"])
        for te, key in (("text_encoder", "text_encoder_lora_layers"), ("text_encoder_2", "text_encoder_2_lora_layers")):
            inject_adapter_in_model(te_config, getattr(pipe, te))
            layers[key] = get_peft_model_state_dict(getattr(pipe, te))
            layers[f"{key.removesuffix('_layers')}_adapter_metadata"] = te_config.to_dict()
    out.mkdir(parents=True, exist_ok=True)
    StableDiffusionXLPipeline.save_lora_weights(out, **layers)
    return out


@pytest.fixture(scope="module")
def loras(tiny_model_path: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("adapters")
    return {
        "alice": str(make_lora(tiny_model_path, root / "alice", rank=4, seed=1)),
        "bob": str(make_lora(tiny_model_path, root / "bob", rank=8, seed=2)),
        "carol": str(make_lora(tiny_model_path, root / "carol", rank=2, seed=3)),
        "dave": str(make_lora(tiny_model_path, root / "dave", rank=4, seed=4, text_encoder=True)),
    }


def image(backend: Any, adapter: str | None, seed: int = 11) -> np.ndarray:
    (images,) = backend.generate([params(adapter, seed)], lambda: False)
    return np.asarray(images[0], dtype=np.int16)


def fused(tiny_model_path: Path, lora: str | None) -> np.ndarray:
    backend = DiffusersBackend(str(tiny_model_path), lora=lora)
    backend.load()
    return image(backend, None)


@pytest.mark.parametrize("fuse", [True, False], ids=["fused", "hot-swap-slot"])
def test_each_adapter_matches_its_own_fused_server_and_none_is_the_base(
        tiny_model_path: Path, loras: dict[str, str], fuse: bool) -> None:
    backend = MultiAdapterBackend(str(tiny_model_path), loras, resident=8, max_rank=8, fuse=fuse)
    backend.load()
    base = fused(tiny_model_path, None)
    assert np.abs(image(backend, None) - base).max() <= 2, "no adapter must be the base model"
    seen = {}
    # Alternating, including back to the base model after an adapter was swapped in.
    for name in ["alice", "bob", None, "dave", "alice", "carol", None, "dave"]:
        got = image(backend, name)
        if name is None:
            assert np.abs(got - base).max() <= 2, "the base model after a swap must be the base model again"
            continue
        want = seen.setdefault(name, fused(tiny_model_path, loras[name]))
        assert np.abs(got - want).max() <= 2, f"adapter {name} differs from its own one-LoRA server"
        assert np.abs(got - base).max() > 8, f"adapter {name} changed nothing"


def switch_at_random(backend: MultiAdapterBackend, names: Sequence[str | None], switches: int) -> None:
    rng = random.Random(switches)
    for _ in range(switches):
        backend.activate(rng.choice(names))


@pytest.mark.compat
def test_fused_unet_weights_are_the_one_adapter_servers_bit_for_bit_even_after_many_switches(
        tiny_model_path: Path, loras: dict[str, str]) -> None:
    """The drift of repeated switches, measured: none. Each switch puts the merged layers back from
    the copy of their base weights before merging the next adapter, so no rounding accumulates."""
    import torch
    from peft.tuners.lora import LoraLayer

    backend = MultiAdapterBackend(str(tiny_model_path), loras, resident=8, max_rank=8)
    backend.load()
    assert backend.fuse, "an uncompiled UNet fuses by default"
    base = {key: value.clone() for key, value in backend.pipeline.unet.state_dict().items()}
    want: dict[str | None, dict[str, Any]] = {None: base}
    for name, uri in loras.items():
        one = DiffusersBackend(str(tiny_model_path), lora=uri)
        one.load()
        want[name] = one.pipeline.unet.state_dict()
    names: list[str | None] = [*loras, None]

    def drift(name: str | None) -> float:
        backend.activate(name)
        got = backend.pipeline.unet.state_dict()
        assert set(got) == set(want[name]), "the UNet must hold plain layers only, no LoRA layers beside them"
        return max(float((got[key] - value).abs().max()) for key, value in want[name].items())

    for switches in (0, 1000):
        switch_at_random(backend, names, switches)
        for adapter in names:
            assert drift(adapter) == 0.0, f"{adapter or 'the base model'} after {switches} switches"
            assert not any(isinstance(module, LoraLayer) for module in backend.pipeline.unet.modules())
    # What is kept to undo a merge: the layers the adapters target, nothing else of the UNet.
    targeted = {path for path, _ in backend.pipeline.unet.named_modules() if path.endswith(tuple(TARGETS))}
    assert set(backend._base_weights) == targeted
    kept = sum(tensor.numel() for params in backend._base_weights.values() for tensor in params.values())
    assert kept < sum(param.numel() for param in backend.pipeline.unet.parameters()) / 4
    assert all(torch.equal(backend._base_weights[path]["weight"], base[f"{path}.weight"]) for path in targeted)


def test_fused_images_equal_the_one_adapter_servers_before_and_after_many_switches(
        tiny_model_path: Path, loras: dict[str, str]) -> None:
    backend = MultiAdapterBackend(str(tiny_model_path), loras, resident=8, max_rank=8)
    backend.load()
    names = [*loras, None]
    want = {name: fused(tiny_model_path, loras[name] if name else None) for name in names}
    for switches in (0, 300):
        switch_at_random(backend, names, switches)
        for name in names:
            diff = np.abs(image(backend, name) - want[name]).max()
            if name == "dave":
                # Its text-encoder LoRA runs beside the encoders' weights here, fused there.
                assert diff <= 2, f"dave after {switches} switches"
            else:
                # The same UNet weights bit for bit: the same image, the base model's included.
                assert diff == 0, f"{name or 'the base model'} after {switches} switches"


def test_text_encoder_lora_is_applied_only_for_its_adapter(tiny_model_path: Path, loras: dict[str, str]) -> None:
    backend = MultiAdapterBackend(str(tiny_model_path), loras, resident=8, max_rank=8)
    backend.load()
    image(backend, "dave")
    assert "dave" in backend.pipeline.text_encoder.peft_config
    # alice after dave: the text encoders must be back to their base weights.
    assert np.abs(image(backend, "alice") - fused(tiny_model_path, loras["alice"])).max() <= 2


def test_lru_keeps_k_resident_evicts_the_least_recent_and_reloads_on_demand(
        tiny_model_path: Path, loras: dict[str, str]) -> None:
    events: list[tuple[str, str]] = []
    backend = MultiAdapterBackend(str(tiny_model_path), loras, resident=2, max_rank=8)
    backend.observers.append(lambda event, name, seconds: events.append((event, name)))
    backend.load()
    first = image(backend, "alice")
    image(backend, "bob")
    image(backend, "alice")  # alice is now the most recent; bob the least
    assert events == [("load", "alice"), ("load", "bob")]
    image(backend, "carol")
    assert events[-2:] == [("load", "carol"), ("evict", "bob")]
    assert backend.resident_names() == ["alice", "carol"]
    image(backend, "bob")
    assert events[-2:] == [("load", "bob"), ("evict", "alice")]
    assert np.abs(image(backend, "alice") - first).max() <= 2, "a reloaded adapter must give the same image"
    assert events[-2:] == [("load", "alice"), ("evict", "carol")]


def test_unknown_and_removed_adapters_are_refused_and_new_ones_served(
        tiny_model_path: Path, loras: dict[str, str]) -> None:
    backend = MultiAdapterBackend(str(tiny_model_path), {"alice": loras["alice"]}, resident=2, max_rank=8)
    backend.load()
    with pytest.raises(UnknownAdapter) as err:
        image(backend, "bob")
    assert err.value.name == "bob"
    backend.set_adapters({"bob": loras["bob"]})
    assert backend.adapter_names() == ["bob"]
    image(backend, "bob")
    with pytest.raises(UnknownAdapter):
        image(backend, "alice")


def test_an_adapter_above_the_rank_limit_is_a_named_load_failure(tiny_model_path: Path, loras: dict[str, str]) -> None:
    backend = MultiAdapterBackend(str(tiny_model_path), loras, resident=2, max_rank=4)
    backend.load()
    image(backend, "alice")
    with pytest.raises(AdapterLoadFailed, match="bob"):
        image(backend, "bob")


def test_compiled_unet_never_recompiles_across_swaps_of_different_ranks(
        tiny_model_path: Path, loras: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    import torch
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    backend = MultiAdapterBackend(str(tiny_model_path), loras, resident=8, max_rank=8, compile_unet=True,
                                  compile_backend="aot_eager")
    assert not backend.fuse, "a compiled UNet takes adapters through the hot-swap slot"
    # load() fills the slot and the warm-up generation compiles the UNet, before the server is ready.
    model = ServedModel(backend, warmup_steps=1)
    model.load()
    assert counters["stats"]["unique_graphs"] >= 1, "the UNet was not compiled by the warm-up"
    graphs = counters["stats"]["unique_graphs"]
    # From here on a recompile is an error.
    monkeypatch.setattr(torch._dynamo.config, "error_on_recompile", True)
    first = image(model, "alice")
    for name in ["bob", "carol", None, "dave", "alice"]:  # ranks 8, 2, base, 4 with text encoders, 4
        image(model, name)
    assert np.abs(image(model, "alice") - first).max() <= 2
    assert counters["stats"]["unique_graphs"] == graphs, "a swap compiled a new graph"


def test_a_compiled_unet_refuses_fusing(tiny_model_path: Path, loras: dict[str, str]) -> None:
    with pytest.raises(ValueError, match="hot-swap slot"):
        MultiAdapterBackend(str(tiny_model_path), loras, compile_unet=True, fuse=True)


# --- through the HTTP API ---------------------------------------------------------------------
FAST = ServerSettings(default_steps=2, request_timeout=120, max_batch=4)
PROMPT = "a photo of sks person"


class RecordingBackend:
    """The real multi-adapter backend, recording the adapters of each pipeline call; the first
    call waits for `release` so that later requests queue up behind it."""

    def __init__(self, inner: MultiAdapterBackend) -> None:
        self.inner = inner
        self.batches: list[list[str | None]] = []
        self.release = threading.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def generate(self, batch: Sequence[GenerationParams], should_stop: ShouldStop) -> list[list[Any]]:
        self.batches.append([p.adapter for p in batch])
        assert self.release.wait(60)
        return self.inner.generate(batch, should_stop)


@pytest.fixture
def served(tiny_model_path: Path, loras: dict[str, str]) -> tuple[ServedModel, RecordingBackend]:
    backend = RecordingBackend(MultiAdapterBackend(str(tiny_model_path), loras, resident=2, max_rank=8))
    backend.release.set()
    model = ServedModel(backend, warmup_steps=0)  # type: ignore[arg-type]
    model.load()
    return model, backend


def test_api_names_the_adapter_404s_an_unknown_one_and_counts_per_adapter(serving: Any, metric: Any,
        served: tuple[ServedModel, RecordingBackend]) -> None:
    model, backend = served

    async def scenario() -> None:
        async with serving(create_app(model, FAST)) as client:
            native = await client.post("/v1/generate", json={"prompt": PROMPT, "seed": 3, "adapter": "alice"})
            assert native.status_code == 200, native.text
            openai = await client.post("/v1/images/generations", json={"prompt": PROMPT, "model": "bob"})
            assert openai.status_code == 200, openai.text
            base = await client.post("/v1/generate", json={"prompt": PROMPT, "seed": 3})
            assert base.status_code == 200
            assert native.json()["images"] != base.json()["images"]
            for path, body in (("/v1/generate", {"prompt": PROMPT, "adapter": "mallory"}),
                               ("/v1/images/generations", {"prompt": PROMPT, "model": "mallory"})):
                missing = await client.post(path, json=body)
                assert missing.status_code == 404, missing.text
                assert "mallory" in missing.json()["error"]["message"]
                assert missing.json()["error"]["type"] == "not_found_error"
            listed = (await client.get("/v1/adapters")).json()
            assert listed == {"adapters": ["alice", "bob", "carol", "dave"], "resident": ["alice", "bob"]}
            text = (await client.get("/metrics")).text
            assert metric(text, "sdxl_adapter_requests_total", adapter="alice") == 1
            assert metric(text, "sdxl_adapter_requests_total", adapter="bob") == 1
            assert metric(text, "sdxl_adapter_requests_total", adapter="_base") == 1
            assert metric(text, "sdxl_adapter_request_duration_seconds_count", adapter="alice") == 1
            assert metric(text, "sdxl_adapter_loads_total", adapter="alice") == 1
            assert metric(text, "sdxl_requests_rejected_total", reason="unknown_adapter") == 2
            # A third adapter evicts the least recently used (alice).
            assert (await client.post("/v1/generate", json={"prompt": PROMPT, "adapter": "carol"})).status_code == 200
            text = (await client.get("/metrics")).text
            assert metric(text, "sdxl_adapter_evictions_total", adapter="alice") == 1

    asyncio.run(scenario())
    assert backend.batches == [["alice"], ["bob"], [None], ["carol"]]


def test_one_server_model_ignores_openai_model_and_404s_a_named_adapter(serving: Any,
                                                                        loaded_model: ServedModel) -> None:
    async def scenario() -> None:
        async with serving(create_app(loaded_model, FAST)) as client:
            ignored = await client.post("/v1/images/generations", json={"prompt": PROMPT, "model": "dall-e-3"})
            assert ignored.status_code == 200
            named = await client.post("/v1/generate", json={"prompt": PROMPT, "adapter": "alice"})
            assert named.status_code == 404
            assert "alice" in named.json()["error"]["message"]

    asyncio.run(scenario())


def test_a_micro_batch_carries_one_adapter_only(serving: Any,
                                                served: tuple[ServedModel, RecordingBackend]) -> None:
    model, backend = served
    backend.release.clear()

    async def scenario() -> list[int]:
        async with serving(create_app(model, FAST)) as client:
            async def ask(adapter: str | None) -> int:
                body: dict[str, Any] = {"prompt": PROMPT, "seed": 1}
                if adapter is not None:
                    body["adapter"] = adapter
                return (await client.post("/v1/generate", json=body)).status_code

            first = asyncio.ensure_future(ask("alice"))
            while not backend.batches:
                await asyncio.sleep(0.01)
            rest = []
            for adapter in ["bob", "alice", None, "bob", "alice", None]:
                rest.append(asyncio.ensure_future(ask(adapter)))
                await asyncio.sleep(0.02)  # admitted in this order
            backend.release.set()
            return list(await asyncio.gather(first, *rest))

    assert asyncio.run(scenario()) == [200] * 7
    assert backend.batches == [["alice"], ["bob", "bob"], ["alice", "alice"], [None, None]]


# --- `sdxl-workload serve --adapters FILE` as a process ---------------------------------------
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(condition: Any, process: subprocess.Popen[bytes], log: Path, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, f"server exited early:\n{log.read_text()}"
        with contextlib.suppress(httpx.TransportError):
            if condition():
                return
        time.sleep(0.1)
    raise AssertionError(f"condition not met in {timeout} s:\n{log.read_text()}")


def test_serve_reads_the_adapters_file_and_follows_its_changes_without_restart(
        tiny_model_path: Path, loras: dict[str, str], tmp_path: Path) -> None:
    adapters = tmp_path / "adapters.json"
    adapters.write_text(json.dumps({"adapters": {"alice": loras["alice"]}}))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / "server.log"
    process = subprocess.Popen(
        [sys.executable, "-m", "sdxl_workloads", "serve", "--spec", str(_set_spec(tmp_path, resident=2, maxRank=8)),
         "--host", "127.0.0.1", "--port", str(port), "--model", str(tiny_model_path), "--adapters", str(adapters),
         "--adapters-refresh", "0.2"],
        stdout=log.open("wb"), stderr=subprocess.STDOUT, env={**os.environ, "OMP_NUM_THREADS": "1"})

    def generate(adapter: str) -> int:
        body = {"prompt": PROMPT, "num_inference_steps": 2, "adapter": adapter}
        return httpx.post(f"{url}/v1/generate", json=body, timeout=60).status_code

    try:
        wait_for(lambda: httpx.get(f"{url}/readyz", timeout=2).status_code == 200, process, log)
        assert generate("alice") == 200
        assert generate("bob") == 404
        # What the operator does when a fine-tune joins and another leaves: rewrite the file.
        adapters.write_text(json.dumps({"adapters": {"bob": loras["bob"], "dave": loras["dave"]}}))
        wait_for(lambda: httpx.get(f"{url}/v1/adapters", timeout=2).json()["adapters"] == ["bob", "dave"],
                 process, log, timeout=20)
        assert generate("bob") == 200
        assert generate("dave") == 200
        assert generate("alice") == 404
        # A broken file keeps the last good set.
        adapters.write_text("{not json")
        time.sleep(0.6)
        assert generate("bob") == 200
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(30)
    assert process.returncode == 0, log.read_text()


A_SET = {"fineTunes": ["alice"], "baseModel": "builtin:tiny", "accelerator": "cpu"}


def _set_spec(tmp_path: Path, **adapters: int) -> Path:
    """A set's spec, as the operator's server spec carries it (the base model comes as --model)."""
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({**A_SET, "adapters": adapters}))
    return spec


@pytest.mark.parametrize(("spec", "flags", "named"), [
    ({"fineTune": "alice", "accelerator": "neuron"}, ["--model", "builtin:tiny"],
     "--adapters cannot be used with spec.accelerator neuron"),
    ({"lora": "x", "baseModel": "builtin:tiny", "accelerator": "cpu"}, [], "spec.lora and --adapters"),
    ({**A_SET, "adapters": {"resident": 0}}, ["--model", "builtin:tiny"], "spec.adapters.resident"),
    ({**A_SET, "loraScale": 0.5}, ["--model", "builtin:tiny"], "spec.loraScale applies to spec.lora only"),
    ({**A_SET, "adapters": {"maxRank": 0}}, ["--model", "builtin:tiny"], "spec.adapters.maxRank"),
])
def test_a_bad_adapter_spec_fails_before_serving_with_the_field_named(
        tmp_path: Path, spec: dict[str, object], flags: list[str], named: str) -> None:
    adapters = tmp_path / "adapters.json"
    adapters.write_text(json.dumps({"adapters": {"alice": "/nowhere"}}))
    spec_file = tmp_path / "spec.json"
    spec_file.write_text(json.dumps(spec))
    result = subprocess.run(
        [sys.executable, "-m", "sdxl_workloads", "serve", "--spec", str(spec_file), "--adapters", str(adapters),
         *flags], capture_output=True, timeout=60,
        env={**os.environ, "SDXL_TERMINATION_LOG": str(tmp_path / "result.json")})
    assert result.returncode == 2, result.stderr
    assert named in json.loads((tmp_path / "result.json").read_text())["message"]
