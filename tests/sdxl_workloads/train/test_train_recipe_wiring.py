"""The recipe's parts are wired into the loop that runs them, tested through `sdxl-workload train`.

`snr_loss_weights` being right (test_train_recipe) says nothing about the loop applying it; the
optimizer having a text-encoder learning rate says nothing about the text encoders getting it.
Each test here fails when the loop drops one of them. Spies wrap the real functions (they record
and pass through, or replace one value to make its effect visible); nothing else is faked.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from sdxl_workloads.train import embedding_cache, optimizers, train_command, training_data, training_loop


def test_the_loop_applies_min_snr_with_the_specs_gamma(tmp_path: Path, kit: Any,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """With the weights replaced by zeros for gamma 5 (the default), every step's loss must be 0:
    any loop that does not multiply by the weights it was given, or passes another gamma, trains."""
    calls: list[tuple[float, str]] = []
    real = training_loop.snr_loss_weights

    def zero_weights(scheduler: Any, timesteps: torch.Tensor, snr_gamma: float, prediction_type: str) -> torch.Tensor:
        calls.append((snr_gamma, prediction_type))
        weights = real(scheduler, timesteps, snr_gamma, prediction_type)
        return torch.zeros_like(weights) if snr_gamma == 5.0 else weights

    monkeypatch.setattr(training_loop, "snr_loss_weights", zero_weights)
    spec = kit.spec_with({"training": {"maxSteps": 3}})
    spec["training"].pop("snrGamma", None)  # the default
    result = kit.run_train(tmp_path, spec)
    assert result.exit_code == 0, result.stdout_lines[-5:]
    assert calls and set(calls) == {(5.0, "epsilon")}
    assert [e["loss"] for e in result.of("progress")] == [0.0] * len(result.of("progress"))
    assert result.result is not None and result.result["metrics"]["finalLoss"] == 0.0


def test_min_snr_weighs_the_instance_loss_only(tmp_path: Path, kit: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The prior-preservation term stays plain MSE (diffusers' script): zero Min-SNR weights leave it."""
    real = training_loop.snr_loss_weights
    monkeypatch.setattr(training_loop, "snr_loss_weights",
                        lambda *args: torch.zeros_like(real(*args)))
    spec = kit.spec_with({"classPrompt": "a photo of a person",
                          "priorPreservation": {"enabled": True, "numClassImages": 1},
                          "training": {"maxSteps": 2}})
    result = kit.run_train(tmp_path, spec)
    assert result.exit_code == 0, result.stdout_lines[-5:]
    assert all(e["loss"] > 0 for e in result.of("progress"))


def _keep_built_optimizers(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """The optimizers the run builds (the real ones, passed through), in order."""
    built: list[Any] = []
    real_build = optimizers.build_optimizer

    def keep(name: str, groups: Any) -> Any:
        built.append(real_build(name, groups))
        return built[-1]

    monkeypatch.setattr(optimizers, "build_optimizer", keep)
    return built


def test_text_encoders_train_at_their_own_learning_rate(tmp_path: Path, kit: Any,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """UNet LoRA at learningRate, both text encoders' LoRA at textEncoderLearningRate (20x lower by
    default), as the optimizer holds them after the run."""
    built = _keep_built_optimizers(monkeypatch)
    runs: list[Any] = []
    real_run = train_command.build_training_run
    monkeypatch.setattr(train_command, "build_training_run", lambda plan: runs.append(real_run(plan)) or runs[-1])
    spec = kit.spec_with({"training": {"maxSteps": 2, "trainTextEncoder": True}})
    spec["training"].pop("learningRate")  # both rates at their defaults
    result = kit.run_train(tmp_path, spec)
    assert result.exit_code == 0, result.stdout_lines[-5:]
    (optimizer,), (run,) = built, runs
    by_lr = {group["lr"]: {id(p) for p in group["params"]} for group in optimizer.param_groups}
    assert set(by_lr) == {1e-4, 5e-6}
    models = train_command.unwrapped_models(run)
    te_params = {id(p) for name in ("text_encoder_one", "text_encoder_two")
                 for p in models[name].parameters() if p.requires_grad}
    unet_params = {id(p) for p in models["unet"].parameters() if p.requires_grad}
    assert te_params and by_lr[5e-6] == te_params
    assert by_lr[1e-4] == unet_params


@pytest.mark.parametrize(("training", "unet_decay", "text_decay"), [
    ({}, 1e-4, 1e-3),  # the CRD's defaults: diffusers' SDXL DreamBooth-LoRA values
    ({"weightDecay": 0.05, "textEncoderWeightDecay": 0.0}, 0.05, 0.0),
])
def test_each_lora_decays_at_the_specs_weight_decay(tmp_path: Path, kit: Any, monkeypatch: pytest.MonkeyPatch,
                                                     training: dict[str, Any], unet_decay: float,
                                                     text_decay: float) -> None:
    """spec.training.weightDecay reaches the UNet LoRA's parameter group, textEncoderWeightDecay the
    text encoders'."""
    built = _keep_built_optimizers(monkeypatch)
    spec = kit.spec_with({"training": {"maxSteps": 1, "trainTextEncoder": True, **training}})
    result = kit.run_train(tmp_path, spec)
    assert result.exit_code == 0, result.stdout_lines[-5:]
    (optimizer,) = built
    assert [group["weight_decay"] for group in optimizer.param_groups] == [unet_decay, text_decay]


def test_pixels_are_decoded_one_vae_chunk_at_a_time(tmp_path: Path, kit: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Host memory does not grow with numClassImages (up to 10,000): no fp32 tensor of every image."""
    sizes: list[int] = []
    real = training_data.pixels_from_images

    def record(images: Any) -> torch.Tensor:
        sizes.append(len(images))
        return real(images)

    monkeypatch.setattr(training_data, "pixels_from_images", record)
    spec = kit.spec_with({"classPrompt": "a photo of a person",
                          "priorPreservation": {"enabled": True, "numClassImages": 2 * embedding_cache.VAE_CHUNK + 1},
                          "validation": {"numInferenceSteps": 1}, "training": {"maxSteps": 1}})
    result = kit.run_train(tmp_path, spec)
    assert result.exit_code == 0, result.stdout_lines[-5:]
    assert sum(sizes) >= 2 * (2 * embedding_cache.VAE_CHUNK + 1)  # class images and their mirrors
    assert max(sizes) <= embedding_cache.VAE_CHUNK


def test_the_base_model_is_loaded_in_its_training_dtype(tiny_model_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """bf16 weights come out of from_pretrained already bf16 (no fp32 copy on the GPU to cast);
    the VAE stays fp32 (SDXL's overflows in half precision)."""
    import diffusers
    import transformers

    from sdxl_workloads.train import model_loading

    loaded: dict[str, torch.dtype] = {}
    for module, name in ((diffusers, "UNet2DConditionModel"), (diffusers, "AutoencoderKL"),
                         (transformers, "CLIPTextModel"), (transformers, "CLIPTextModelWithProjection")):
        cls = getattr(module, name)
        real = cls.from_pretrained.__func__

        def spy(klass: Any, *args: Any, _real: Any = real, _name: str = name, **kwargs: Any) -> Any:
            model = _real(klass, *args, **kwargs)
            loaded[_name] = next(model.parameters()).dtype
            return model

        monkeypatch.setattr(cls, "from_pretrained", classmethod(spy))
    model = model_loading.load_base_model(str(tiny_model_path), weight_dtype=torch.bfloat16)
    assert loaded == {"UNet2DConditionModel": torch.bfloat16, "AutoencoderKL": torch.float32,
                      "CLIPTextModel": torch.bfloat16, "CLIPTextModelWithProjection": torch.bfloat16}
    assert model.unet.dtype == torch.bfloat16 and model.vae.dtype == torch.float32


def test_ddp_is_told_of_unused_parameters_only_when_text_encoders_train() -> None:
    from sdxl_workloads.spec.finetune_spec import load_finetune_spec

    base = {"instanceImages": "builtin:sample-subject", "instancePrompt": "a photo of sks person",
            "training": {"mixedPrecision": "no"}}
    for train_te in (True, False):
        spec = load_finetune_spec({**base, "training": {"mixedPrecision": "no", "trainTextEncoder": train_te}})
        assert train_command.make_accelerator(spec).ddp_handler.find_unused_parameters is train_te


@pytest.mark.slow
def test_two_processes_train_the_text_encoders(tmp_path: Path, kit: Any) -> None:
    """DDP over two CPU processes (gloo), as on a two-GPU node: the first text encoder's last layer
    gets no gradient (SDXL reads its penultimate layer), which DDP refuses unless told."""
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent))
    assert torchrun, "torchrun comes with torch"
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(yaml.safe_dump(kit.spec_with({"training": {"maxSteps": 2, "trainTextEncoder": True}})))
    env = {**os.environ, "ACCELERATE_USE_CPU": "true", "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [torchrun, "--nproc_per_node", "2", "-m", "sdxl_workloads", "train", "--spec", str(spec_file),
         "--output", str(tmp_path / "out"), "--termination-log", str(tmp_path / "log")],
        env=env, capture_output=True, text=True, timeout=300, check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "out" / "lora" / "pytorch_lora_weights.safetensors").is_file()


def test_accumulated_micro_batches_walk_the_data_in_order_and_average_their_loss(
        tmp_path: Path, kit: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """With gradientAccumulation 3, step s trains on global micro-batches 3s, 3s+1, 3s+2 (so each
    epoch visits every image once), and the step's loss is the mean of their losses."""
    micro_indexes: list[int] = []
    micro_losses: list[float] = []
    real_picks, real_loss = training_loop.picks_for_micro_batch, training_loop.micro_step_loss

    def picks(num: int, batch: int, micro: int, seed: int, *args: Any) -> Any:
        if seed == 42:  # the instance stream (class images use another seed)
            micro_indexes.append(micro)
        return real_picks(num, batch, micro, seed, *args)

    def loss(run: Any, micro_index: int) -> torch.Tensor:
        value = real_loss(run, micro_index)
        micro_losses.append(float(value))
        return value

    monkeypatch.setattr(training_loop, "picks_for_micro_batch", picks)
    monkeypatch.setattr(training_loop, "micro_step_loss", loss)
    monkeypatch.setattr(training_loop, "PROGRESS_INTERVAL_SECONDS", 0.0)  # a progress line per step
    result = kit.run_train(tmp_path, kit.spec_with({"training": {"maxSteps": 3, "gradientAccumulation": 3}}))
    assert result.exit_code == 0, result.stdout_lines[-5:]
    assert micro_indexes == list(range(9))
    expected = [sum(micro_losses[i:i + 3]) / 3 for i in range(0, 9, 3)]
    assert [e["loss"] for e in result.of("progress")] == pytest.approx(
        [sum(expected[:n]) / n for n in (1, 2, 3)], rel=1e-4)  # the mean of the steps so far


def test_progress_is_reported_at_the_first_and_last_step_and_then_by_interval(
        tmp_path: Path, kit: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(training_loop, "PROGRESS_INTERVAL_SECONDS", 1e9)
    result = kit.run_train(tmp_path, kit.spec_with({"training": {"maxSteps": 5}}))
    assert result.exit_code == 0
    assert [e["step"] for e in result.of("progress")] == [1, 5]


def test_a_stop_requested_at_the_last_step_still_finishes_the_run(
        tmp_path: Path, kit: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """SIGTERM arriving as the last step ends: the run exports its LoRA rather than checkpointing."""
    from contextlib import contextmanager

    from sdxl_workloads.train import graceful_stop

    request = graceful_stop.StopRequest()

    @contextmanager
    def this_request() -> Any:
        yield request

    def hook(plan: Any) -> Any:
        def set_at_end(run: Any) -> None:
            if run.step == run.settings.max_steps:
                request.set()
        return set_at_end

    monkeypatch.setattr(graceful_stop, "stop_on_sigterm", this_request)
    monkeypatch.setattr(train_command, "validation_hook", hook)
    result = kit.run_train(tmp_path, kit.spec_with({"training": {"maxSteps": 3}}))
    assert result.exit_code == 0 and result.result is not None and result.result["status"] == "Succeeded"
    assert not result.of("checkpoint")


def test_offset_noise_adds_a_small_per_channel_constant(tmp_path: Path, kit: Any,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """noiseOffset 0.1: noise = N(0, 1) + 0.1 x a per-(image, channel) N(0, 1) constant, so its
    variance is about 1.01 and its spatial means spread by about 0.1 (not 1 + 0.1 added, nor 0)."""
    noises: list[torch.Tensor] = []
    real = training_loop.denoising_loss

    def spy(unet: Any, scheduler: Any, latents: torch.Tensor, noise: torch.Tensor, *args: Any) -> torch.Tensor:
        noises.append(noise.detach().clone())
        return real(unet, scheduler, latents, noise, *args)

    monkeypatch.setattr(training_loop, "denoising_loss", spy)
    result = kit.run_train(tmp_path, kit.spec_with({"training": {"maxSteps": 6, "batchSize": 4, "noiseOffset": 0.1}}))
    assert result.exit_code == 0
    noise = torch.cat(noises)
    assert 0.85 < float(noise.var()) < 1.2
    assert abs(float(noise.mean())) < 0.1


def test_gradients_are_clipped_at_max_grad_norm_by_default(tmp_path: Path, kit: Any,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    from accelerate import Accelerator

    norms: list[float] = []
    real = Accelerator.clip_grad_norm_

    def record(self: Any, parameters: Any, max_norm: float, *args: Any, **kwargs: Any) -> Any:
        norms.append(max_norm)
        return real(self, parameters, max_norm, *args, **kwargs)

    monkeypatch.setattr(Accelerator, "clip_grad_norm_", record)
    result = kit.run_train(tmp_path, kit.spec_with({"training": {"maxSteps": 3}}))
    assert result.exit_code == 0
    assert norms == [1.0, 1.0, 1.0]  # once per optimizer step, at the default maxGradNorm


def test_the_prior_loss_is_weighted_by_loss_weight(tmp_path: Path, kit: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each micro-batch's loss = mean(instance losses) + lossWeight x mean(class losses)."""
    per_example: list[torch.Tensor] = []
    returned: list[float] = []
    real_denoise, real_step = training_loop.denoising_loss, training_loop.micro_step_loss

    def denoise(*args: Any, **kwargs: Any) -> torch.Tensor:
        losses = real_denoise(*args, **kwargs)
        per_example.append(losses.detach().clone())
        return losses

    def step(run: Any, micro_index: int) -> torch.Tensor:
        value = real_step(run, micro_index)
        returned.append(float(value))
        return value

    monkeypatch.setattr(training_loop, "denoising_loss", denoise)
    monkeypatch.setattr(training_loop, "micro_step_loss", step)
    spec = kit.spec_with({"classPrompt": "a photo of a person",
                          "priorPreservation": {"enabled": True, "numClassImages": 2, "lossWeight": 0.25},
                          "training": {"maxSteps": 2, "batchSize": 2, "snrGamma": 0}})
    result = kit.run_train(tmp_path, spec)
    assert result.exit_code == 0
    expected = [float(losses[:2].mean() + 0.25 * losses[2:].mean()) for losses in per_example]
    assert returned == pytest.approx(expected, rel=1e-5)


def test_trained_text_encoders_run_in_training_mode(tmp_path: Path, kit: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Gradient checkpointing (and any dropout) act only in training mode: the loop must set it."""
    modes: list[bool] = []
    real = training_loop.encode_prompts

    def spy(text_encoders: Any, tokenizers: Any, prompts: Any) -> Any:
        modes.extend(encoder.training for encoder in text_encoders)
        return real(text_encoders, tokenizers, prompts)

    monkeypatch.setattr(training_loop, "encode_prompts", spy)
    result = kit.run_train(tmp_path, kit.spec_with({"training": {"maxSteps": 2, "trainTextEncoder": True}}))
    assert result.exit_code == 0
    assert modes and all(modes)
