"""DreamBooth prior preservation: class images from the base model keep the class prompt's
behaviour closer to the base model's than training on the subject alone."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

CLASS_PROMPT = "a photo of a person"


def _spec(kit: Any, prior: bool, **training: Any) -> dict[str, Any]:
    return kit.spec_with({
        "classPrompt": CLASS_PROMPT,
        "priorPreservation": {"enabled": prior, "numClassImages": 6, "lossWeight": 1.0},
        "training": {"maxSteps": 120, "learningRate": 3e-2, "snrGamma": 0, **training},
    })


def _class_latents(pipe: Any, folder: Path) -> tuple[torch.Tensor, torch.Tensor]:
    from sdxl_workloads.train.embedding_cache import cache_latents
    from sdxl_workloads.train.instance_data import load_instance_data
    from sdxl_workloads.train.training_data import pixels_from_images

    examples = load_instance_data(folder, CLASS_PROMPT, 64).examples
    with torch.no_grad():
        latents = torch.stack([d.mean for d in cache_latents(pipe.vae, pixels_from_images([e.image for e in examples]),
                                                             "cpu")])
    time_ids = torch.tensor([list(e.time_ids()) for e in examples], dtype=torch.float32)
    return latents, time_ids


def _class_drift(kit: Any, model: Path, lora: Path, latents: torch.Tensor, time_ids: torch.Tensor) -> float:
    """Mean squared change of the UNet's noise prediction on class-prompt inputs, LoRA vs base."""
    from diffusers import DDPMScheduler

    from sdxl_workloads.train.embedding_cache import encode_prompts
    from sdxl_workloads.train.training_loop import predict_noise

    scheduler = DDPMScheduler.from_pretrained(str(model), subfolder="scheduler")
    generator = torch.Generator().manual_seed(5)
    noise = torch.randn(latents.shape, generator=generator)
    timesteps = torch.linspace(50, 950, len(latents)).long()
    noisy = scheduler.add_noise(latents, noise, timesteps)
    base, tuned = kit.load_pipeline(model), kit.load_pipeline(model, lora)
    with torch.no_grad():
        embeds, pooled = encode_prompts([base.text_encoder, base.text_encoder_2], [base.tokenizer, base.tokenizer_2],
                                        [CLASS_PROMPT] * len(latents))
        before = predict_noise(base.unet, noisy, timesteps, embeds, pooled, time_ids)
        after = predict_noise(tuned.unet, noisy, timesteps, embeds, pooled, time_ids)
    return float(((after - before) ** 2).mean())


@pytest.mark.slow
def test_prior_preservation_reduces_drift_on_the_class_prompt(tmp_path: Path, kit: Any,
                                                              tiny_model_path: Path) -> None:
    without = kit.run_train(tmp_path, _spec(kit, prior=False), name="without")
    with_prior = kit.run_train(tmp_path, _spec(kit, prior=True), name="with")
    assert without.exit_code == 0 and with_prior.exit_code == 0

    class_dir = with_prior.output / "class_images"
    assert sorted(p.name for p in class_dir.iterdir()) == [f"class-{i:05d}.png" for i in range(6)]
    assert not (without.output / "class_images").exists()
    latents, time_ids = _class_latents(kit.load_pipeline(tiny_model_path), class_dir)

    drift_without = _class_drift(kit, tiny_model_path, without.output / "lora", latents, time_ids)
    drift_with = _class_drift(kit, tiny_model_path, with_prior.output / "lora", latents, time_ids)
    assert drift_with < 0.95 * drift_without, (drift_with, drift_without)


def test_class_images_are_kept_with_the_run_and_reused_on_resume(tmp_path: Path, kit: Any,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from sdxl_workloads.train import train_command

    spec = _spec(kit, prior=True, maxSteps=4, checkpointEvery=2)
    spec["priorPreservation"]["numClassImages"] = 3

    def preempt(plan: Any) -> Any:
        def stop(run: Any) -> None:
            if run.step == 3:
                raise KeyboardInterrupt

        return stop

    with monkeypatch.context() as patch:
        patch.setattr(train_command, "validation_hook", preempt)
        first = kit.run_train(tmp_path, spec)
    assert first.exit_code == 130
    assert len([e for e in first.of("log") if "generated class image" in e["message"]]) == 3
    published = sorted(p.name for p in (first.output / "class_images").iterdir())
    assert published == ["class-00000.png", "class-00001.png", "class-00002.png"]

    resumed = kit.run_train(tmp_path, spec, resume="latest")
    assert resumed.exit_code == 0
    assert not [e for e in resumed.of("log") if "generated class image" in e["message"]]


def test_existing_class_images_are_used_first(tmp_path: Path, kit: Any, sample_images_path: Path) -> None:
    spec = _spec(kit, prior=True, maxSteps=2)
    spec["priorPreservation"].update({"numClassImages": 12, "classImages": str(sample_images_path)})
    result = kit.run_train(tmp_path, spec)
    assert result.exit_code == 0
    existing = len(list(sample_images_path.glob("*.png")))
    generated = [e for e in result.of("log") if "generated class image" in e["message"]]
    assert len(generated) == 12 - existing
    assert any(f"{12} class images" in e["message"] for e in result.of("log"))
