"""`builtin:tiny`: an SDXL-architecture pipeline small enough to train on a laptop CPU.

It has every part the real SDXL 1.0 base has — two CLIP text encoders (the second with a
projection, whose pooled output feeds the UNet), a UNet with `addition_embed_type="text_time"`
and cross-attention over both encoders' hidden states, a VAE that downsamples by 8, and the Euler
scheduler with SDXL's scheduler config — only with far fewer channels and layers. Weights are
random from a fixed seed, so the same seed gives byte-identical safetensors.

The pipeline is written once in diffusers layout into the cache
(`$SDXL_CACHE_DIR/builtin/<size>-seed<seed>-v<N>/`) and everyone loads it with
`StableDiffusionXLPipeline.from_pretrained(path)`: the very code path that loads the real SDXL,
so tests and the demo exercise production loading, LoRA and saving code, not a test double.

Sizes:
- `tiny`: a training step at 64 px takes a few milliseconds on one CPU core (tests, demo).
- `mid`: the same architecture with SDXL's three UNet levels and ~58M UNet parameters, so CPU
  runs are compute-bound rather than overhead-bound (benchmarks).
- `world`: the starting point of `builtin:world`, which is pretrained rather than random
  (builtin/world_pretraining.py).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sdxl_workloads.storage.atomic_write import cached_folder, write_then_rename
from sdxl_workloads.storage.cache_dir import cache_root

# Bump when anything below changes the written model, so old cache folders are never reused.
MODEL_FORMAT_VERSION = 2

SIZES = ("tiny", "mid")

# The scheduler config of stabilityai/stable-diffusion-xl-base-1.0 (scheduler/scheduler_config.json).
SDXL_SCHEDULER_CONFIG: dict[str, Any] = {
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "beta_start": 0.00085,
    "interpolation_type": "linear",
    "num_train_timesteps": 1000,
    "prediction_type": "epsilon",
    "steps_offset": 1,
    "timestep_spacing": "leading",
    "trained_betas": None,
    "use_karras_sigmas": False,
}

# SDXL's VAE latent scale (vae/config.json of the base model); kept so latents have SDXL's scale.
SDXL_VAE_SCALING_FACTOR = 0.13025

# CLIP's special tokens; the tokenizer and both text encoders must agree on their ids.
START_TOKEN = "<|startoftext|>"
END_TOKEN = "<|endoftext|>"
# CLIP's context length. A local CLIPTokenizer without it encodes without truncating, and then
# the text encoder's position embeddings overflow on long prompts.
MODEL_MAX_LENGTH = 77

# Words the tiny BPE learns merges from: the prompts our examples, tests and demo use, so they
# tokenize into a few tokens each as with real CLIP (any other text still encodes, byte by byte).
_MERGE_CORPUS = (
    "a photo of sks person dog cat man woman face portrait in the on with and at by "
    "wearing red blue green yellow hat garden beach city street park forest studio light "
    "painting style high quality detailed close up smiling standing sitting"
)


@dataclass(frozen=True)
class TinySize:
    """The dimensions that differ between `tiny` and `mid` (everything else follows SDXL)."""

    text_hidden_1: int  # text_encoder (CLIPTextModel) hidden size; SDXL: 768
    text_hidden_2: int  # text_encoder_2 (CLIPTextModelWithProjection) hidden size; SDXL: 1280
    text_layers: int  # transformer layers in each text encoder; SDXL: 12 and 32
    text_heads: int  # attention heads in each text encoder
    projection_dim: int  # text_encoder_2 pooled projection; SDXL: 1280
    unet_channels: tuple[int, ...]  # UNet block_out_channels; SDXL: (320, 640, 1280)
    unet_down_blocks: tuple[str, ...]  # first level has no attention, as in SDXL
    unet_transformer_layers: tuple[int, ...]  # transformer blocks per level; SDXL: (1, 2, 10)
    unet_heads: tuple[int, ...]  # diffusers calls this `attention_head_dim`; SDXL: (5, 10, 20)
    unet_layers_per_block: int  # SDXL: 2
    addition_time_embed_dim: int  # per time id; SDXL: 256
    norm_groups: int  # GroupNorm groups in UNet and VAE; SDXL: 32
    vae_channels: tuple[int, int, int, int]  # four levels = downsampling by 8, like SDXL's (128, 256, 512, 512)
    vae_layers_per_block: int  # SDXL: 2
    sample_size: int  # latent size the pipeline defaults to (x8 = default image size)


TINY = TinySize(
    text_hidden_1=32, text_hidden_2=32, text_layers=2, text_heads=2, projection_dim=32,
    unet_channels=(32, 64), unet_down_blocks=("DownBlock2D", "CrossAttnDownBlock2D"),
    unet_transformer_layers=(1, 1), unet_heads=(2, 4), unet_layers_per_block=1,
    addition_time_embed_dim=8, norm_groups=8,
    vae_channels=(8, 16, 16, 16), vae_layers_per_block=1, sample_size=8,
)

MID = TinySize(
    text_hidden_1=256, text_hidden_2=384, text_layers=4, text_heads=4, projection_dim=384,
    unet_channels=(96, 192, 320),
    unet_down_blocks=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
    unet_transformer_layers=(1, 1, 2), unet_heads=(4, 8, 8), unet_layers_per_block=2,
    addition_time_embed_dim=64, norm_groups=32,
    vae_channels=(32, 64, 128, 128), vae_layers_per_block=1, sample_size=32,
)

# The shape `builtin:world` is pretrained from (builtin/world_pretraining.py): wider than `tiny` so
# captions can steer hair, shirt, pose and setting, still a few MB and trainable on one core.
WORLD = TinySize(
    text_hidden_1=64, text_hidden_2=64, text_layers=2, text_heads=2, projection_dim=64,
    unet_channels=(32, 64), unet_down_blocks=("DownBlock2D", "CrossAttnDownBlock2D"),
    unet_transformer_layers=(1, 1), unet_heads=(2, 4), unet_layers_per_block=2,
    addition_time_embed_dim=16, norm_groups=8,
    vae_channels=(8, 16, 32, 32), vae_layers_per_block=1, sample_size=8,
)

SIZE_CONFIGS = {"tiny": TINY, "mid": MID, "world": WORLD}


def model_dir_name(size: str, seed: int) -> str:
    return f"{size}-seed{seed}-v{MODEL_FORMAT_VERSION}"


def ensure_tiny_model(size: str = "tiny", seed: int = 0,
                      cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """Return the folder of the built-in pipeline, building it into the cache on first use.

    Concurrent callers are safe: each builds into its own temp folder beside the target and
    renames it into place; a loser of that race discards its copy and uses the winner's.
    """
    if size not in SIZE_CONFIGS:
        raise ValueError(f"unknown built-in model size {size!r}; choose one of {', '.join(SIZES)}")
    target = cache_root(cache_dir) / "builtin" / model_dir_name(size, seed)
    return cached_folder(target, lambda folder: write_tiny_model(folder, size=size, seed=seed),
                         lambda folder: (folder / "model_index.json").is_file())


def write_tiny_model(out: str | os.PathLike[str], size: str = "tiny", seed: int = 0) -> Path:
    """Build the pipeline from configs with seeded random weights and save it in diffusers layout."""
    out = Path(out)
    pipe = build_tiny_pipeline(size=size, seed=seed)
    pipe.save_pretrained(out, safe_serialization=True)
    _prefix_text_encoder_keys(out / "text_encoder" / "model.safetensors")
    # transformers 5 saves only tokenizer.json; older transformers (the Neuron image pins 4.57)
    # load a CLIPTokenizer from vocab.json + merges.txt, so write those beside it.
    vocab, merges = build_bpe_vocab()
    for folder in ("tokenizer", "tokenizer_2"):
        _write_bpe_files(out / folder, vocab, merges)
    return out


def _prefix_text_encoder_keys(path: Path) -> None:
    """Store CLIPTextModel weights under `text_model.*`, as the real SDXL checkpoints do.

    transformers 5 saves them without that prefix, and transformers 4.57 (the Neuron image's)
    then loads none of them and silently keeps random weights. The prefixed names load in both.
    """
    from safetensors.torch import load_file, save_file

    tensors = load_file(str(path))
    if all(name.startswith("text_model.") for name in tensors):
        return
    renamed = {name if name.startswith("text_model.") else f"text_model.{name}": t for name, t in tensors.items()}
    save_file(renamed, str(path), metadata={"format": "pt"})


def build_tiny_pipeline(size: str = "tiny", seed: int = 0) -> Any:
    """An in-memory StableDiffusionXLPipeline with seeded random weights (fp32, CPU)."""
    import torch
    from diffusers import (
        AutoencoderKL,
        EulerDiscreteScheduler,
        StableDiffusionXLPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    dims = SIZE_CONFIGS[size]
    tokenizer = build_tokenizer()
    vocab_size = len(tokenizer.get_vocab())
    bos_id = tokenizer.convert_tokens_to_ids(START_TOKEN)
    eos_id = tokenizer.convert_tokens_to_ids(END_TOKEN)

    def text_config(hidden: int, projection_dim: int) -> Any:
        return CLIPTextConfig(
            vocab_size=vocab_size, hidden_size=hidden, intermediate_size=hidden * 4,
            projection_dim=projection_dim, num_hidden_layers=dims.text_layers,
            num_attention_heads=dims.text_heads, max_position_embeddings=MODEL_MAX_LENGTH,
            hidden_act="gelu", layer_norm_eps=1e-5,
            # CLIP pools at the end-of-text token; these ids must be the tokenizer's.
            bos_token_id=bos_id, eos_token_id=eos_id, pad_token_id=eos_id,
        )

    # fork_rng: building the model must not disturb the caller's random state, and each part
    # gets its own sub-seed so adding a part later does not change the others' weights.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed * 1000 + 1)
        text_encoder = CLIPTextModel(text_config(dims.text_hidden_1, dims.text_hidden_1))
        torch.manual_seed(seed * 1000 + 2)
        text_encoder_2 = CLIPTextModelWithProjection(text_config(dims.text_hidden_2, dims.projection_dim))
        torch.manual_seed(seed * 1000 + 3)
        up_blocks = tuple(
            "CrossAttnUpBlock2D" if block.startswith("CrossAttn") else "UpBlock2D"
            for block in reversed(dims.unet_down_blocks)
        )
        unet = UNet2DConditionModel(
            sample_size=dims.sample_size, in_channels=4, out_channels=4,
            down_block_types=dims.unet_down_blocks, up_block_types=up_blocks,
            block_out_channels=dims.unet_channels, layers_per_block=dims.unet_layers_per_block,
            transformer_layers_per_block=dims.unet_transformer_layers,
            attention_head_dim=dims.unet_heads, use_linear_projection=True,
            norm_num_groups=dims.norm_groups,
            # SDXL conditions on both encoders' penultimate hidden states, concatenated.
            cross_attention_dim=dims.text_hidden_1 + dims.text_hidden_2,
            # ... and on the six time ids (original size, crop top-left, target size) plus the
            # pooled text embedding of text_encoder_2.
            addition_embed_type="text_time",
            addition_time_embed_dim=dims.addition_time_embed_dim,
            projection_class_embeddings_input_dim=6 * dims.addition_time_embed_dim + dims.projection_dim,
        )
        torch.manual_seed(seed * 1000 + 4)
        levels = len(dims.vae_channels)
        vae = AutoencoderKL(
            in_channels=3, out_channels=3, latent_channels=4,
            down_block_types=("DownEncoderBlock2D",) * levels,
            up_block_types=("UpDecoderBlock2D",) * levels,
            block_out_channels=dims.vae_channels, layers_per_block=dims.vae_layers_per_block,
            norm_num_groups=min(dims.norm_groups, min(dims.vae_channels)),
            sample_size=dims.sample_size * 8, scaling_factor=SDXL_VAE_SCALING_FACTOR,
            # SDXL's original VAE overflows in fp16 and is upcast by the pipeline; keep that flag.
            force_upcast=True,
        )
    scheduler = EulerDiscreteScheduler.from_config(SDXL_SCHEDULER_CONFIG)
    return StableDiffusionXLPipeline(
        vae=vae, text_encoder=text_encoder, text_encoder_2=text_encoder_2,
        tokenizer=tokenizer, tokenizer_2=tokenizer, unet=unet, scheduler=scheduler,
        force_zeros_for_empty_prompt=True, add_watermarker=False,
    )


def _bytes_to_unicode() -> dict[int, str]:
    """CLIP/GPT-2's reversible byte -> printable character table (so any text encodes)."""
    printable = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    chars = list(printable)
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            chars.append(256 + extra)
            extra += 1
    return dict(zip(printable, (chr(c) for c in chars), strict=True))


def build_bpe_vocab() -> tuple[dict[str, int], list[str]]:
    """A small CLIP-style BPE vocabulary: every byte (alone and word-final), merges learned
    greedily from `_MERGE_CORPUS`, then the two special tokens. Deterministic."""
    base = list(_bytes_to_unicode().values())
    vocab_tokens = base + [ch + "</w>" for ch in base]
    words = [[*word[:-1], word[-1] + "</w>"] for word in _MERGE_CORPUS.split()]
    merges: list[str] = []
    while True:
        counts: dict[tuple[str, str], int] = {}
        for word in words:
            for pair in itertools.pairwise(word):
                counts[pair] = counts.get(pair, 0) + 1
        if not counts:
            break
        # Most frequent pair first; ties broken by the pair itself so the order is stable.
        best = min(counts, key=lambda pair: (-counts[pair], pair))
        merges.append(f"{best[0]} {best[1]}")
        merged = best[0] + best[1]
        vocab_tokens.append(merged)
        new_words = []
        for word in words:
            out: list[str] = []
            i = 0
            while i < len(word):
                if i + 1 < len(word) and (word[i], word[i + 1]) == best:
                    out.append(merged)
                    i += 2
                else:
                    out.append(word[i])
                    i += 1
            new_words.append(out)
        words = new_words
    vocab_tokens += [START_TOKEN, END_TOKEN]
    vocab = {token: index for index, token in enumerate(dict.fromkeys(vocab_tokens))}
    return vocab, merges


def _write_bpe_files(folder: Path, vocab: dict[str, int], merges: list[str]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False))
    # CLIP's merges.txt starts with a version line that loaders skip.
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")


def build_tokenizer() -> Any:
    """A CLIPTokenizer loaded from locally written vocab.json + merges.txt (no hub)."""
    from transformers import CLIPTokenizer

    vocab, merges = build_bpe_vocab()
    with tempfile.TemporaryDirectory() as tmp:
        _write_bpe_files(Path(tmp), vocab, merges)
        # from_pretrained reads these two files on transformers 4.x and 5.x alike.
        return CLIPTokenizer.from_pretrained(tmp, model_max_length=MODEL_MAX_LENGTH)


def run(args: argparse.Namespace) -> int:
    """`sdxl-workload tiny-model OUT [--size tiny|mid] [--seed N]`: write the pipeline to OUT."""
    out = Path(args.out)
    if out.exists() and any(out.iterdir()):
        from sdxl_workloads.protocol import WorkloadError

        raise WorkloadError("InvalidInput", f"{out} exists and is not empty; choose a new or empty folder")
    # Written straight to OUT (not via the cache, whose home folder may be read-only in a
    # container), through a temp folder beside it so OUT never holds half a model.
    write_then_rename(out, lambda staging: write_tiny_model(staging, size=args.size, seed=args.seed), folder=True)
    print(f"wrote the built-in {args.size} SDXL-architecture pipeline (seed {args.seed}) to {out}")
    return 0
