"""The embedded SDXL-architecture model: deterministic, loadable, SDXL-shaped, fast."""

from __future__ import annotations

import copy
import hashlib
import statistics
import time
from pathlib import Path

import pytest
import torch

from sdxl_workloads import cli
from sdxl_workloads.builtin import tiny_model
from sdxl_workloads.builtin.tiny_model import SDXL_SCHEDULER_CONFIG, ensure_tiny_model
from sdxl_workloads.protocol import WorkloadError

# These modules also run in the Neuron image (compile: storage, spec files, builtin:tiny), so
# `make test-compat` runs these tests against its older library versions too.
pytestmark = pytest.mark.compat


def _weight_hashes(folder: Path) -> dict[str, str]:
    return {
        str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*.safetensors"))
    }


@pytest.fixture(scope="module")
def pipe(tiny_model_path: Path):
    from diffusers import StableDiffusionXLPipeline

    return StableDiffusionXLPipeline.from_pretrained(tiny_model_path)


def test_same_seed_gives_identical_weights_and_other_seed_differs(tmp_path: Path) -> None:
    first = ensure_tiny_model("tiny", seed=7, cache_dir=tmp_path / "a")
    second = ensure_tiny_model("tiny", seed=7, cache_dir=tmp_path / "b")
    other = ensure_tiny_model("tiny", seed=8, cache_dir=tmp_path / "c")
    first_hashes = _weight_hashes(first)
    assert set(first_hashes) == {
        "text_encoder/model.safetensors", "text_encoder_2/model.safetensors",
        "unet/diffusion_pytorch_model.safetensors", "vae/diffusion_pytorch_model.safetensors",
    }
    assert first_hashes == _weight_hashes(second)
    other_hashes = _weight_hashes(other)
    assert all(first_hashes[name] != other_hashes[name] for name in first_hashes)


def test_building_does_not_disturb_the_callers_random_state(tmp_path: Path) -> None:
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    tiny_model.build_tiny_pipeline("tiny", seed=1)
    assert torch.equal(torch.rand(3), expected)


def test_cache_folder_is_versioned_and_reused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SDXL_CACHE_DIR", str(tmp_path))
    path = ensure_tiny_model()
    assert path == tmp_path / "builtin" / f"tiny-seed0-v{tiny_model.MODEL_FORMAT_VERSION}"
    stamp = (path / "unet" / "diffusion_pytorch_model.safetensors").stat().st_mtime_ns
    # A second call must not rebuild (it would rewrite the files).
    monkeypatch.setattr(tiny_model, "write_tiny_model", lambda *a, **k: pytest.fail("rebuilt"))
    assert ensure_tiny_model() == path
    assert (path / "unet" / "diffusion_pytorch_model.safetensors").stat().st_mtime_ns == stamp
    # No staging folders are left beside it.
    assert [p.name for p in path.parent.iterdir()] == [path.name]


def test_losing_a_concurrent_build_race_uses_the_winners_copy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_write = tiny_model.write_tiny_model
    target = tmp_path / "builtin" / tiny_model.model_dir_name("tiny", 0)

    def write_while_another_process_finishes_first(out: Path, size: str, seed: int) -> Path:
        real_write(target, size=size, seed=seed)  # the other process's rename landed first
        (target / "winner").write_text("")
        return real_write(out, size=size, seed=seed)

    monkeypatch.setattr(tiny_model, "write_tiny_model", write_while_another_process_finishes_first)
    assert ensure_tiny_model(cache_dir=tmp_path) == target
    assert (target / "winner").exists()
    assert sorted(p.name for p in target.parent.iterdir()) == [target.name]


def test_unknown_size_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="tiny, mid"):
        ensure_tiny_model("huge", cache_dir=tmp_path)


def test_has_sdxl_architecture(pipe) -> None:
    unet, te1, te2 = pipe.unet.config, pipe.text_encoder.config, pipe.text_encoder_2.config
    assert type(pipe).__name__ == "StableDiffusionXLPipeline"
    assert type(pipe.text_encoder).__name__ == "CLIPTextModel"
    assert type(pipe.text_encoder_2).__name__ == "CLIPTextModelWithProjection"
    assert unet.addition_embed_type == "text_time"
    assert unet.cross_attention_dim == te1.hidden_size + te2.hidden_size
    assert unet.projection_class_embeddings_input_dim == 6 * unet.addition_time_embed_dim + te2.projection_dim
    assert any(block.startswith("CrossAttn") for block in unet.down_block_types)
    assert pipe.vae_scale_factor == 8
    assert type(pipe.scheduler).__name__ == "EulerDiscreteScheduler"
    for key, value in SDXL_SCHEDULER_CONFIG.items():
        assert pipe.scheduler.config[key] == value, key


def test_vae_downsamples_by_eight(pipe) -> None:
    with torch.no_grad():
        latents = pipe.vae.encode(torch.zeros(1, 3, 64, 96)).latent_dist.mean
    assert tuple(latents.shape) == (1, 4, 8, 12)


def test_tokenizers_share_clip_special_tokens_and_truncate_at_77(pipe) -> None:
    for tokenizer in (pipe.tokenizer, pipe.tokenizer_2):
        assert tokenizer.model_max_length == 77
        ids = tokenizer("a photo of sks person " * 40, truncation=True,
                        max_length=tokenizer.model_max_length).input_ids
        assert len(ids) == 77
        assert ids[0] == tokenizer.convert_tokens_to_ids("<|startoftext|>")
        assert ids[-1] == tokenizer.convert_tokens_to_ids("<|endoftext|>")
    assert pipe.text_encoder.config.eos_token_id == pipe.tokenizer.convert_tokens_to_ids("<|endoftext|>")
    # The prompt words are whole tokens, as with real CLIP.
    assert pipe.tokenizer.tokenize("a photo of sks person") == ["a</w>", "photo</w>", "of</w>", "sks</w>",
                                                                "person</w>"]


def test_writes_bpe_files_older_transformers_can_load(tiny_model_path: Path) -> None:
    for folder in ("tokenizer", "tokenizer_2"):
        assert (tiny_model_path / folder / "vocab.json").is_file()
        assert (tiny_model_path / folder / "merges.txt").read_text().startswith("#version")


def test_generates_an_image_with_the_pipeline(pipe) -> None:
    images = pipe("a photo of sks person", num_inference_steps=2, height=64, width=64,
                  generator=torch.Generator().manual_seed(0), output_type="np").images
    assert images.shape == (1, 64, 64, 3)
    assert images.std() > 0  # random weights still give a non-constant image


def test_a_training_step_at_64px_is_fast(pipe) -> None:
    unet = copy.deepcopy(pipe.unet)  # the shared pipeline's weights stay untouched
    unet.train()
    optimizer = torch.optim.AdamW(unet.parameters(), lr=1e-4)
    latents = torch.randn(1, 4, 8, 8)
    hidden = torch.randn(1, 77, unet.config.cross_attention_dim)
    pooled = torch.randn(1, pipe.text_encoder_2.config.projection_dim)
    time_ids = torch.tensor([[64.0, 64.0, 0.0, 0.0, 64.0, 64.0]])
    # CPU time of one thread, not wall time: the test machine is shared, and waiting for a core
    # is not the model's cost.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    durations = []
    try:
        for _ in range(6):
            start = time.process_time()
            pred = unet(latents, torch.tensor([500]), hidden,
                        added_cond_kwargs={"text_embeds": pooled, "time_ids": time_ids}).sample
            pred.pow(2).mean().backward()
            optimizer.step()
            optimizer.zero_grad()
            durations.append(time.process_time() - start)
    finally:
        torch.set_num_threads(threads)
    assert statistics.median(durations[1:]) < 0.1, durations


@pytest.mark.slow
def test_mid_size_is_the_same_architecture_but_larger() -> None:
    mid = tiny_model.build_tiny_pipeline("mid", seed=0)
    unet_params = sum(p.numel() for p in mid.unet.parameters())
    assert 30e6 <= unet_params <= 80e6
    assert mid.vae_scale_factor == 8
    assert mid.unet.config.addition_embed_type == "text_time"
    assert mid.unet.config.cross_attention_dim == (
        mid.text_encoder.config.hidden_size + mid.text_encoder_2.config.hidden_size)


def test_cli_writes_the_model_and_refuses_a_non_empty_folder(tmp_path: Path, tiny_model_path: Path) -> None:
    out = tmp_path / "model"
    out.mkdir()  # an empty folder is fine
    assert cli.main(["tiny-model", str(out)]) == 0
    assert [p.name for p in tmp_path.iterdir()] == ["model"]  # no staging left beside it
    assert _weight_hashes(out) == _weight_hashes(tiny_model_path)
    args = cli.parse_args(["tiny-model", str(out)])
    with pytest.raises(WorkloadError, match="not empty") as err:
        tiny_model.run(args)
    assert err.value.reason == "InvalidInput"
