"""Many fine-tunes, one server (cpu and nvidia): the base pipeline stays resident and the LoRA of
the fine-tune a request names is applied before its batch runs.

How an adapter is applied to the UNet depends on whether the UNet is compiled:

- **Uncompiled (the CPU default): fused into the weights on a switch.** The adapter a batch names is
  merged into the targeted layers' weights with peft's own merge (what the one-adapter server does
  at load, so the weights are the same bit for bit), and consecutive batches for that adapter run
  at the speed of a plain pipeline: no LoRA layers beside the weights, no per-layer Python on every
  step. A switch first puts the previously fused layers back from a copy of their base weights
  (kept for the targeted layers only), then merges the next adapter: the weights never drift,
  however many switches, and the base model (a request naming no adapter) is the base weights
  exactly. An adapter's LoRA layers are read through peft once, when it becomes resident, and
  held outside the UNet until merged.
- **Compiled (`compile_unet`, the GPU setting): one hot-swap slot.** diffusers' hot-swap
  (`enable_lora_hotswap(target_rank=max_rank)` before the first LoRA, then
  `load_lora_weights(..., hotswap=True)`) copies an adapter's weights into the slot in place,
  padded to `max_rank`, with its scale held in a tensor. Shapes and code paths never change, so a
  UNet compiled with `torch.compile` is never recompiled by a swap
  (tests/sdxl_workloads/server/test_serve_adapters.py runs with `error_on_recompile`). The base
  model zeroes the slot's B matrices in place, for the same reason. Every adapter must target the
  same layers as (or fewer than) the first one loaded; fine-tunes of this operator's trainer all do.
- **Text encoders** (fine-tunes trained with `trainTextEncoder`), in both cases: each resident
  adapter's text-encoder LoRA is loaded under its own peft adapter name and activated with
  `set_adapters`-style switching. The text encoders run once per request, not once per step, so
  their unfused LoRA costs little, and they are never compiled.

Either way an adapter's UNet LoRA may not exceed `max_rank` (the slot's size; the same limit on
both paths, so a fine-tune served by one server is served by the other).

"Resident" means an adapter's weights are in memory (on the device) ready to be applied: the
`resident` most recently used adapters are kept (LRU); others are read from their URI on demand.
The set of adapters (name -> LoRA URI) can change while the server runs (`set_adapters`).

The Neuron backend has none of this: a Neuron model has its one LoRA fused at compile time.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sdxl_workloads.protocol import WorkloadError
from sdxl_workloads.server.backends import GenerationParams, ModelLimits, ShouldStop
from sdxl_workloads.server.diffusers_backend import load_pipeline, lora_location, run_pipeline, size_limits

log = logging.getLogger(__name__)

# The peft adapter name of the UNet's one hot-swap slot.
SLOT = "active"
DEFAULT_RESIDENT = 8
# Hot-swap pads every adapter to this rank; an adapter of a higher rank cannot be served.
DEFAULT_MAX_RANK = 64
TEXT_ENCODERS = ("text_encoder", "text_encoder_2")

# (event, adapter, seconds): "load" (read from its URI), "evict" (dropped from memory).
AdapterObserver = Callable[[str, str, float], None]


class UnknownAdapter(KeyError):
    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name

    def __str__(self) -> str:
        # Reached by a request admitted just before its adapter left the set (the app 404s the rest).
        return f"adapter {self.name!r} is not served (any more)"


class AdapterLoadFailed(Exception):
    """An adapter's LoRA could not be read or applied; the message names it and why."""


@dataclass
class _Resident:
    uri: str
    unet: dict[str, Any]  # hot-swap: the UNet's LoRA tensors ("unet." keys), on the device
    unet_layers: list[tuple[str, Any]]  # fused: (module path, peft LoRA layer) held outside the UNet
    alphas: Any  # network alphas of older formats (None for diffusers-format files)
    metadata: Any  # the file's peft LoRA config (rank, alpha, targets), when it carries one
    text_encoders: bool  # loaded into the text encoders under the adapter's own name


def check_adapter_names(adapters: Mapping[str, str]) -> dict[str, str]:
    """name -> URI, with names that cannot clash with the slot and URIs that are not empty."""
    checked: dict[str, str] = {}
    for name, uri in adapters.items():
        if not isinstance(name, str) or not name or name == SLOT:
            raise WorkloadError("InvalidInput", f"adapter name {name!r} is not allowed (empty or reserved)")
        if not isinstance(uri, str) or not uri:
            raise WorkloadError("InvalidInput", f"adapter {name!r}: its LoRA URI must be a non-empty string")
        checked[name] = uri
    return checked


class MultiAdapterBackend:
    """`model` is the base pipeline's URI; `adapters` maps fine-tune names to LoRA URIs.

    `fuse` chooses how the UNet applies an adapter (see the module's doc): fused into the weights on
    a switch, or a hot-swap slot beside them; by default fused unless the UNet is compiled, which
    needs the slot.
    """

    def __init__(self, model: str, adapters: Mapping[str, str], *, resident: int = DEFAULT_RESIDENT,
                 max_rank: int = DEFAULT_MAX_RANK, device: str = "cpu", compile_unet: bool = False,
                 compile_backend: str = "inductor", fuse: bool | None = None) -> None:
        if device not in ("cpu", "cuda"):
            raise ValueError(f"device must be cpu or cuda, got {device!r}")
        if fuse is None:
            fuse = not compile_unet
        if fuse and compile_unet:
            # A merge changes the weights a compiled graph was traced with; the slot never does.
            raise ValueError("a compiled UNet takes adapters through the hot-swap slot (fuse=False)")
        if resident < 1:
            raise ValueError(f"resident must be >= 1, got {resident}")
        if max_rank < 1:
            raise ValueError(f"max_rank must be >= 1, got {max_rank}")
        self.model = model
        self.device = device
        self.resident_limit = resident
        self.max_rank = max_rank
        self.compile_unet = compile_unet
        self.compile_backend = compile_backend
        self.fuse = fuse
        self.description = (f"{model} (diffusers, {device}) + adapters chosen per request "
                            f"({resident} resident, rank <= {max_rank}, "
                            f"{'fused on a switch' if fuse else 'hot-swapped'})")
        self.pipeline: Any = None
        self.observers: list[AdapterObserver] = []
        self._catalog = check_adapter_names(adapters)
        self._resident: collections.OrderedDict[str, _Resident] = collections.OrderedDict()
        # What /v1/adapters reports, replaced whole after each change (read from the event loop while
        # the worker thread changes `_resident`).
        self._resident_snapshot: tuple[str, ...] = ()
        self._active: str | None = None
        self._slot_filled = False
        # Fused: the base weights (and biases) of every layer an adapter has been merged into, by
        # module path, and the LoRA layers merged into the UNet now.
        self._base_weights: dict[str, dict[str, Any]] = {}
        self._merged: list[tuple[str, Any]] = []
        self._lock = threading.Lock()  # the catalog: changed from the reload thread, read per request

    # --- the set of adapters -----------------------------------------------------------------
    def adapter_names(self) -> list[str]:
        with self._lock:
            return sorted(self._catalog)

    def adapter_names_map(self) -> dict[str, str]:
        """name -> LoRA URI of every adapter served."""
        with self._lock:
            return dict(self._catalog)

    def resident_names(self) -> list[str]:
        """Resident adapters, least recently used first."""
        return list(self._resident_snapshot)

    def has_adapter(self, name: str) -> bool:
        with self._lock:
            return name in self._catalog

    def set_adapters(self, adapters: Mapping[str, str]) -> None:
        """Replace the set: new names are served from the next request on; removed ones (and ones
        whose URI changed) are dropped from memory before their next use."""
        catalog = check_adapter_names(adapters)
        with self._lock:
            added = sorted(set(catalog) - set(self._catalog))
            removed = sorted(set(self._catalog) - set(catalog))
            self._catalog = catalog
        if added or removed:
            log.info("adapters changed: added %s, removed %s", added or "none", removed or "none")

    def _notify(self, event: str, name: str, seconds: float = 0.0) -> None:
        for observer in self.observers:
            observer(event, name, seconds)

    # --- loading -----------------------------------------------------------------------------
    def load(self) -> ModelLimits:
        from sdxl_workloads.models.references import resolve_model

        model_path = resolve_model(self.model)
        local = Path(model_path)
        if local.exists() and not (local / "model_index.json").is_file():
            raise WorkloadError(
                "InvalidInput",
                f"--model {self.model}: {local} is not a diffusers pipeline folder (no model_index.json)")
        pipe = load_pipeline(model_path, None, 1.0, self.device).to(self.device)
        if not self.fuse:
            # Before the first LoRA: every adapter is padded to max_rank and its scale is a tensor,
            # so later swaps change values only, never shapes (what a compiled UNet guards on).
            pipe.enable_lora_hotswap(target_rank=self.max_rank)
        self.pipeline = pipe
        first = next(iter(self.adapter_names()), None)
        if self.compile_unet and first is not None:
            # Fill the slot now, so the UNet is compiled by the warm-up generation (ServedModel.load)
            # rather than by the first request; the warm-up (no adapter) zeroes the slot again.
            self.activate(first)
        default_side = int(pipe.unet.config.sample_size) * int(pipe.vae_scale_factor)
        low, high = size_limits(default_side)
        return ModelLimits(default_width=default_side, default_height=default_side, min_side=low, max_side=high)

    def _read(self, name: str, uri: str) -> _Resident:
        """Read an adapter's LoRA from its URI: UNet tensors kept for swapping, text-encoder
        LoRAs loaded under the adapter's name."""
        from sdxl_workloads.models.references import local_input

        started = time.perf_counter()
        try:
            folder, weight_name = lora_location(str(local_input(uri)))
            state_dict, alphas, metadata = self.pipeline.lora_state_dict(
                folder, weight_name=weight_name, return_lora_metadata=True)
        except Exception as err:
            raise AdapterLoadFailed(f"adapter {name!r}: cannot read its LoRA {uri}: {err}") from err
        pipe = self.pipeline
        unet = {k: v.to(self.device, pipe.unet.dtype) for k, v in state_dict.items() if k.startswith("unet.")}
        text = {k: v for k, v in state_dict.items() if k.startswith(tuple(f"{te}." for te in TEXT_ENCODERS))}
        unknown = set(state_dict) - set(unet) - set(text)
        if unknown:
            raise AdapterLoadFailed(f"adapter {name!r}: {uri} has LoRA weights for neither the UNet nor the text "
                                    f"encoders (e.g. {sorted(unknown)[0]})")
        rank = max((int(v.shape[0]) for k, v in unet.items() if "lora_A" in k), default=0)
        if rank > self.max_rank:
            # Hot-swap pads to max_rank and cannot shrink; checked here so the message is ours.
            raise AdapterLoadFailed(f"adapter {name!r}: its UNet LoRA has rank {rank}, above this server's "
                                    f"maximum adapter rank {self.max_rank}; raise the maximum or retrain at a lower rank")
        unet_layers = self._read_unet_layers(name, unet, alphas, metadata) if self.fuse and unet else []
        if text:
            try:
                for te in TEXT_ENCODERS:
                    pipe.load_lora_into_text_encoder(
                        text, network_alphas=alphas, text_encoder=getattr(pipe, te), prefix=te,
                        lora_scale=1.0, adapter_name=name, metadata=metadata, _pipeline=pipe)
            except Exception as err:
                raise AdapterLoadFailed(
                    f"adapter {name!r}: its text-encoder LoRA does not fit {self.model}: {err}") from err
        self._notify("load", name, time.perf_counter() - started)
        log.info("adapter %s loaded from %s in %.2f s", name, uri, time.perf_counter() - started)
        return _Resident(uri=uri, unet={} if self.fuse else unet, unet_layers=unet_layers, alphas=alphas,
                         metadata=metadata, text_encoders=bool(text))

    def _read_unet_layers(self, name: str, unet: dict[str, Any], alphas: Any,
                          metadata: Any) -> list[tuple[str, Any]]:
        """peft's LoRA layers of an adapter, built by loading it into the UNet the ordinary way
        (every file format diffusers reads) and then taken out again: the UNet keeps its plain
        layers, and each LoRA layer still points at the base layer it merges into."""
        from peft.tuners.lora import LoraLayer

        pipe = self.pipeline
        try:
            pipe.load_lora_into_unet(dict(unet), network_alphas=alphas, unet=pipe.unet, adapter_name=name,
                                     _pipeline=pipe, metadata=metadata)
        except Exception as err:
            pipe.unet.unload_lora()
            raise AdapterLoadFailed(
                f"adapter {name!r}: its UNet LoRA does not fit {self.model}: {type(err).__name__}: {err}") from err
        layers = [(path, module) for path, module in pipe.unet.named_modules()
                  if isinstance(module, LoraLayer) and name in module.lora_A]
        # Only this adapter is ever loaded into the UNet, and only here: unloading it leaves the
        # UNet as it was (the base layers, holding the weights of whatever adapter is fused).
        pipe.unet.unload_lora()
        return layers

    def _evict(self, name: str) -> None:
        entry = self._resident.pop(name)
        if entry.text_encoders:
            from diffusers.utils.peft_utils import delete_adapter_layers

            for te in TEXT_ENCODERS:
                encoder = getattr(self.pipeline, te, None)
                if encoder is not None and name in getattr(encoder, "peft_config", {}):
                    delete_adapter_layers(encoder, name)
                    encoder.peft_config.pop(name, None)
        if self._active == name:
            self._active = "\0evicted"  # whatever runs next must swap
        self._notify("evict", name)
        log.info("adapter %s evicted (keeping the %d most recently used)", name, self.resident_limit)

    def _resident_entry(self, name: str) -> _Resident:
        with self._lock:
            if name not in self._catalog:
                raise UnknownAdapter(name)
            uri = self._catalog[name]
            for gone in [n for n, e in self._resident.items() if n not in self._catalog or self._catalog[n] != e.uri]:
                self._evict(gone)
        entry = self._resident.get(name)
        if entry is None:
            entry = self._read(name, uri)
            self._resident[name] = entry
        self._resident.move_to_end(name)
        while len(self._resident) > self.resident_limit:
            self._evict(next(iter(self._resident)))
        self._resident_snapshot = tuple(self._resident)
        return entry

    # --- switching: fused ---------------------------------------------------------------------
    def _unmerge(self) -> None:
        """Put every merged layer back to its base weights, from the copy: exact, so repeated
        switches never accumulate rounding error in the working precision."""
        import torch

        with torch.no_grad():
            for path, layer in self._merged:
                base = layer.get_base_layer()
                for param_name, kept in self._base_weights[path].items():
                    getattr(base, param_name).data.copy_(kept)
                layer.merged_adapters.clear()
        self._merged = []

    def _merge(self, name: str, layers: Sequence[tuple[str, Any]]) -> None:
        import torch

        with torch.no_grad():
            for path, layer in layers:
                if path not in self._base_weights:
                    # Not merged into before, so these are its base weights; only targeted layers
                    # are copied (the rest of the UNet never changes).
                    self._base_weights[path] = {param_name: param.detach().clone()
                                                for param_name, param in layer.get_base_layer().named_parameters()}
                # peft's merge, as the one-adapter server's fuse_lora calls it: the same weights.
                layer.merge(adapter_names=[name])
                self._merged.append((path, layer))

    # --- switching: hot-swap slot -------------------------------------------------------------
    def _zero_slot(self) -> None:
        import torch
        from peft.tuners.lora import LoraLayer

        with torch.no_grad():
            for module in self.pipeline.unet.modules():
                if isinstance(module, LoraLayer) and SLOT in module.lora_B:
                    module.lora_B[SLOT].weight.zero_()

    def _set_text_encoders(self, name: str | None) -> None:
        from diffusers.utils.peft_utils import set_adapter_layers, set_weights_and_activate_adapters

        for te in TEXT_ENCODERS:
            encoder = getattr(self.pipeline, te, None)
            if encoder is None or not getattr(encoder, "peft_config", None):
                continue
            if name is not None and name in encoder.peft_config:
                set_adapter_layers(encoder, enabled=True)
                set_weights_and_activate_adapters(encoder, [name], [1.0])
            else:
                set_adapter_layers(encoder, enabled=False)

    def activate(self, name: str | None) -> None:
        """Make the pipeline apply adapter `name` (None: the base model). Runs on the model's
        one worker thread, between pipeline calls."""
        if name is not None:
            entry = self._resident_entry(name)
        if name == self._active:
            return
        if name is None:
            if self._merged:
                self._unmerge()
            if self._slot_filled:
                self._zero_slot()
            self._set_text_encoders(None)
            self._active = None
            return
        if self.fuse:
            self._unmerge()
            self._merge(name, entry.unet_layers)
        elif entry.unet:
            try:
                pipe = self.pipeline
                pipe.load_lora_into_unet(dict(entry.unet), network_alphas=entry.alphas, unet=pipe.unet, adapter_name=SLOT,
                                         _pipeline=pipe, hotswap=self._slot_filled, metadata=entry.metadata)
            except Exception as err:
                raise AdapterLoadFailed(
                    f"adapter {name!r} cannot be swapped into the UNet (rank above {self.max_rank}, or layers "
                    f"the first adapter did not target): {type(err).__name__}: {err}") from err
            if not self._slot_filled:
                self._slot_filled = True
                if self.compile_unet:
                    # After the first LoRA, as diffusers' hot-swap requires; later swaps reuse it.
                    self.pipeline.unet.compile(backend=self.compile_backend, fullgraph=True)
        elif self._slot_filled:
            self._zero_slot()
        self._set_text_encoders(name if entry.text_encoders else None)
        self._active = name

    def generate(self, batch: Sequence[GenerationParams], should_stop: ShouldStop) -> list[list[Any]]:
        self.activate(batch[0].adapter)
        return run_pipeline(self.pipeline, batch, should_stop)
