"""`sdxl-workload train`: fine-tune SDXL with DreamBooth + LoRA, the recipe of diffusers'
`train_dreambooth_lora_sdxl.py` as a sequence of stages:

  load spec -> check everything that can be wrong -> load base model -> class images ->
  LoRA -> cache latents/embeddings -> optimizer -> (resume) -> loop -> export -> publish -> report

Everything a user can get wrong (spec values, images, model, output, optimizer on this device)
fails before the first step, with a message that names the field or file. Artifacts are staged
locally and published only when the run is complete; checkpoints are published as they are made
so a restarted pod (`--resume latest`) loses at most `checkpointEvery` steps.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import itertools
import shutil
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from sdxl_contract import artifact_keys, quality_keys
from sdxl_workloads import protocol, random_draws
from sdxl_workloads.models.references import local_input, resolve_model
from sdxl_workloads.spec.finetune_spec import FineTuneSpec, load_finetune_spec
from sdxl_workloads.spec.spec_loading import read_manifest
from sdxl_workloads.storage.output import Output, check_writable
from sdxl_workloads.train import (
    checkpoints,
    embedding_cache,
    graceful_stop,
    lora_export,
    lora_setup,
    model_loading,
    optimizers,
    prior_preservation,
    quality_measurement,
    training_data,
    training_loop,
    validation_images,
)

LORA_DIR = "lora"
VALIDATION_DIR = "validation"
TRAINING_ARGS_FILE = "training_args.json"


@dataclass
class RunPlan:
    """What the checks found: everything needed to train, resolved to local paths."""

    spec: FineTuneSpec
    spec_dict: dict[str, Any]  # the resolved spec, recorded in checkpoints and training_args.json
    run_name: str
    output: Output
    model_path: str
    vae_path: str | None
    instance_images: list[Any]  # instance_data.InstanceExample
    class_image_dir: Path | None
    resume_from: Path | None  # a local checkpoint folder
    accelerator: Any
    validation_prompts: list[str] = field(default_factory=list)
    # builtin:world with the quality report on: the base model's class-prompt subject share
    # (measured before the LoRA is attached), which class drift is measured against.
    world_baseline: float | None = None


# ---------------------------------------------------------------------------------------------
# Stage 1: spec and up-front checks


def load_spec(spec_file: str, output_override: str | None) -> tuple[FineTuneSpec, dict[str, Any], str | None]:
    """The checked spec, its resolved dict (all defaults filled in) and the object's name, if any."""
    manifest = read_manifest(spec_file, expected_kind="SDXLFineTune")
    raw = dict(manifest.spec)
    if output_override:
        raw["output"] = output_override
    spec = load_finetune_spec(raw)
    if not spec.output:
        raise protocol.WorkloadError(
            "InvalidInput", "spec.output: no output given; set spec.output or pass --output URI")
    name = manifest.metadata.get("name")
    return spec, spec.to_dict(), str(name) if name else None


def make_accelerator(spec: FineTuneSpec) -> Any:
    """One Accelerator per run (multi-GPU via `accelerate launch`); its process-wide state is reset
    first so that runs in one process (tests, the demo) may use different precisions."""
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState, GradientState
    from accelerate.utils import DistributedDataParallelKwargs

    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()
    # SDXL conditions on the text encoders' penultimate layer, so the first encoder's last layer
    # LoRA never gets a gradient; DDP waits for every parameter unless told some may be unused
    # ("Expected to have finished reduction"), as diffusers' script tells it.
    ddp = DistributedDataParallelKwargs(find_unused_parameters=spec.training.train_text_encoder)
    accelerator = Accelerator(mixed_precision=spec.training.mixed_precision,
                              gradient_accumulation_steps=spec.training.gradient_accumulation,
                              kwargs_handlers=[ddp])
    if spec.training.mixed_precision == "fp16" and accelerator.device.type == "cpu":
        raise protocol.WorkloadError(
            "InvalidInput",
            "spec.training.mixedPrecision: fp16 needs a GPU and this run is on CPU; use bf16 or no",
        )
    return accelerator


def limit_cpu_threads(spec: FineTuneSpec, device: torch.device) -> None:
    """On CPU, use no more threads than the pod's CPU request: torch sizes its pool from the
    host's cores, not the container's limit, and oversubscribed threads spin against each other."""
    if device.type != "cpu":
        return
    try:
        cores = spec.resources.cpu
        limit = float(cores[:-1]) / 1000 if cores.endswith("m") else float(cores)
    except ValueError:
        return
    torch.set_num_threads(max(1, min(torch.get_num_threads(), int(limit))))


def run_name_of(name: str | None, output_uri: str) -> str:
    return name or output_uri.rstrip("/").rsplit("/", 1)[-1] or "lora"


def check_everything(spec: FineTuneSpec, spec_dict: dict[str, Any], name: str | None,
                     resume: str | None, max_images: int | None = None) -> RunPlan:
    """Every check that needs no training, in the order a user would fix them."""
    from sdxl_workloads.train.instance_data import load_instance_data

    training = spec.training
    output_uri = spec.output or ""  # load_spec refused a spec without one
    check_writable(output_uri)
    accelerator = make_accelerator(spec)
    limit_cpu_threads(spec, accelerator.device)
    optimizers.check_optimizer_available(training.optimizer, accelerator.device)
    instance_images = load_instance_data(
        spec.instance_images, spec.instance_prompt, training.resolution, crop=training.crop,
        max_images=max_images).examples
    class_image_dir = None
    prior = spec.prior_preservation
    if prior.enabled:
        if not spec.class_prompt:
            raise protocol.WorkloadError(
                "InvalidInput", "spec.classPrompt: prior preservation needs a class prompt, e.g. 'a photo of a person'")
        if prior.class_images:
            class_image_dir = local_input(prior.class_images)
            prior_preservation.existing_class_images(class_image_dir)
    model_path = resolve_model_field("spec.baseModel", spec.base_model)
    vae_path = resolve_model_field("spec.vae", spec.vae) if spec.vae else None
    output = Output(output_uri)
    try:
        resume_from = find_resume_checkpoint(resume, output, spec_dict)
    except BaseException:
        output.close()
        raise
    return RunPlan(
        spec=spec, spec_dict=spec_dict, run_name=run_name_of(name, output_uri), output=output,
        model_path=model_path, vae_path=vae_path, instance_images=instance_images,
        class_image_dir=class_image_dir, resume_from=resume_from, accelerator=accelerator,
        validation_prompts=spec.validation_prompts,
    )


def resolve_model_field(field_name: str, ref: str) -> str:
    try:
        return resolve_model(ref)
    except protocol.WorkloadError as err:
        raise protocol.WorkloadError(err.reason, f"{field_name}: {err.message}") from err


def find_resume_checkpoint(resume: str | None, output: Output, spec_dict: dict[str, Any]) -> Path | None:
    if not resume:
        if checkpoints.complete_steps(output):
            protocol.emit_event("log", level="warning", message=(
                f"{output.uri_of(checkpoints.CHECKPOINT_DIR)} holds checkpoints of an earlier run; this run starts "
                "at step 0 and replaces them (pass --resume latest to continue that run instead)"))
        return None
    if resume == "latest":
        folder = checkpoints.fetch_latest_checkpoint(output)
        if folder is None:
            protocol.emit_event("log", message=f"no checkpoint under {output.uri_of('checkpoints')}; starting at step 0")
            return None
    else:
        folder = checkpoints.check_checkpoint_folder(local_input(resume), resume)
    changed = checkpoints.spec_differences(checkpoints.checkpoint_spec(folder), spec_dict)
    if changed:
        raise protocol.WorkloadError(
            "InvalidInput",
            f"--resume: the checkpoint was made with a different spec ({', '.join(changed[:8])} changed); "
            "resume with the same spec, or start a new run with a new output",
        )
    return folder


# ---------------------------------------------------------------------------------------------
# Stage 2: model, class images, LoRA, caches, optimizer


def class_examples_for(plan: RunPlan, model: model_loading.BaseModel) -> Iterator[Any]:
    """Class images (existing + generated with the base model, before any LoRA is attached),
    each opened only when the caller reaches it (see latent_examples)."""
    from sdxl_workloads.train.instance_data import open_rgb, prepare_example

    spec = plan.spec
    prior = spec.prior_preservation
    class_prompt = spec.class_prompt or ""  # load_finetune_spec requires it with prior preservation
    out_dir = plan.output.local_dir / prior_preservation.CLASS_IMAGE_DIR
    if plan.output.exists(prior_preservation.CLASS_IMAGE_DIR):  # a resumed run reuses its class images
        plan.output.download(prior_preservation.CLASS_IMAGE_DIR)
    existing = prior_preservation.existing_class_images(plan.class_image_dir)
    paths = prior_preservation.ensure_class_images(
        model_loading.build_pipeline(model), class_prompt, prior.num_class_images, out_dir,
        existing=existing, resolution=spec.training.resolution, seed=spec.training.seed,
        autocast=plan.accelerator.autocast,
    )
    if out_dir.is_dir() and plan.accelerator.is_main_process:
        plan.output.publish(prior_preservation.CLASS_IMAGE_DIR)
    return (prepare_example(path, open_rgb(path), class_prompt, False, spec.training.resolution)
            for path in paths)


def latent_examples(examples: Iterable[Any], vae: Any, device: torch.device, random_flip: bool,
                    ) -> list[training_data.TrainingExample]:
    """instance_data examples -> cached latents (and those of the mirror image for randomFlip).

    Images are decoded to pixels one VAE chunk at a time, and `examples` may be a lazy iterable
    (class images are opened as they are reached): host memory stays the same for 10 or 10,000
    class images (12.6 MB of fp32 pixels per image at 1024 px) while only latents are kept.
    """
    result: list[training_data.TrainingExample] = []
    iterator = iter(examples)
    while chunk := list(itertools.islice(iterator, embedding_cache.VAE_CHUNK)):
        latents = embedding_cache.cache_latents(
            vae, training_data.pixels_from_images([e.image for e in chunk]), device)
        items = [
            training_data.TrainingExample(latents=lat, caption=e.caption,
                                          time_ids=training_data.time_ids_tensor(e.time_ids()))
            for e, lat in zip(chunk, latents, strict=True)
        ]
        if random_flip:
            mirrored = [e.flipped() for e in chunk]
            flipped = embedding_cache.cache_latents(
                vae, training_data.pixels_from_images([e.image for e in mirrored]), device)
            for item, e, lat in zip(items, mirrored, flipped, strict=True):
                item.flipped_latents = lat
                item.flipped_time_ids = training_data.time_ids_tensor(e.time_ids())
        result.extend(items)
    return result


def build_training_run(plan: RunPlan) -> training_loop.TrainingRun:
    from accelerate.utils import set_seed

    spec, accelerator = plan.spec, plan.accelerator
    training = spec.training
    set_seed(training.seed)  # LoRA init and everything else drawn from the global RNG
    weight_dtype = model_loading.torch_dtype(training.mixed_precision)
    model = model_loading.load_base_model(
        plan.model_path, revision=spec.base_model_revision, vae_path=plan.vae_path,
        weight_dtype=weight_dtype, device=accelerator.device,
    )
    class_images = class_examples_for(plan, model) if spec.prior_preservation.enabled else iter(())
    if spec.quality.enabled and accelerator.is_main_process and quality_measurement.is_world_model(plan.model_path):
        plan.world_baseline = quality_measurement.world_baseline(
            model_loading.build_pipeline(model), spec, accelerator.autocast)

    set_seed(training.seed)
    lora_setup.add_unet_lora(model.unet, training.rank, training.alpha, training.target_modules)
    text_encoders = [model.text_encoder_one, model.text_encoder_two]
    if training.train_text_encoder:
        for text_encoder in text_encoders:
            lora_setup.add_text_encoder_lora(text_encoder, training.rank, training.alpha)
    trained = [model.unet, *(text_encoders if training.train_text_encoder else [])]
    lora_setup.upcast_lora_to_fp32(trained)
    if training.gradient_checkpointing:
        model.unet.enable_gradient_checkpointing()
        if training.train_text_encoder:
            for text_encoder in text_encoders:
                lora_setup.enable_text_encoder_checkpointing(text_encoder)

    instance_examples = latent_examples(plan.instance_images, model.vae, accelerator.device, training.random_flip)
    class_examples = latent_examples(class_images, model.vae, accelerator.device, training.random_flip)
    prompt_cache = None
    if not training.train_text_encoder:
        captions = [e.caption for e in instance_examples + class_examples]
        prompt_cache = embedding_cache.cache_prompt_embeddings(
            text_encoders, [model.tokenizer_one, model.tokenizer_two], captions)
        # With every caption cached the frozen text encoders (~1.6 GB for SDXL in bf16) are idle
        # until validation: park them in host memory (diffusers' script deletes them instead).
        park_text_encoders(model, accelerator.device)

    unet_params = lora_setup.trainable_parameters(model.unet)
    param_groups = [{"params": unet_params, "lr": training.learning_rate,
                     "weight_decay": training.weight_decay}]
    trainable = list(unet_params)
    if training.train_text_encoder:
        te_params = [p for te in text_encoders for p in lora_setup.trainable_parameters(te)]
        param_groups.append({"params": te_params, "lr": training.text_encoder_learning_rate,
                             "weight_decay": training.text_encoder_weight_decay})
        trainable += te_params
    optimizer = optimizers.build_optimizer(training.optimizer, param_groups)
    # The schedule is stepped once per optimizer step by the loop itself, not through accelerate
    # (which would step it once per process).
    lr_scheduler = optimizers.build_lr_scheduler(training.lr_scheduler, optimizer, training.lr_warmup_steps,
                                                 training.max_steps)
    if training.train_text_encoder:
        unet, te_one, te_two, optimizer = accelerator.prepare(model.unet, *text_encoders, optimizer)
        text_encoders = [te_one, te_two]
    else:
        unet, optimizer = accelerator.prepare(model.unet, optimizer)

    settings = training_loop.LoopSettings(
        max_steps=training.max_steps, batch_size=training.batch_size,
        gradient_accumulation=training.gradient_accumulation, snr_gamma=training.snr_gamma,
        noise_offset=training.noise_offset, max_grad_norm=training.max_grad_norm, seed=training.seed,
        random_flip=training.random_flip, train_text_encoder=training.train_text_encoder,
        prior_loss_weight=spec.prior_preservation.loss_weight,
    )
    return training_loop.TrainingRun(
        accelerator=accelerator, model=model, unet=unet, text_encoders=text_encoders, optimizer=optimizer,
        lr_scheduler=lr_scheduler, trainable_params=trainable, settings=settings,
        instance_examples=instance_examples, class_examples=class_examples, prompt_cache=prompt_cache,
        weight_dtype=weight_dtype,
        generator=random_draws.training_generator(
            accelerator.device, plan_noise_seed(training.seed, accelerator.process_index)),
    )


def plan_noise_seed(seed: int, process_index: int, step: int = 0) -> int:
    """Seed of one process's noise stream (distinct per process, and per resume point)."""
    return (seed * 1009 + process_index + step * 7919) % (2**63)


def unwrapped_models(run: training_loop.TrainingRun) -> dict[str, Any]:
    """The trained models by name, outside any DDP wrapper (what checkpoints and exports read)."""
    unwrap = run.accelerator.unwrap_model
    models = {"unet": unwrap(run.unet)}
    if run.settings.train_text_encoder:
        models["text_encoder_one"] = unwrap(run.text_encoders[0])
        models["text_encoder_two"] = unwrap(run.text_encoders[1])
    return models


def restore(run: training_loop.TrainingRun, folder: Path) -> None:
    state = checkpoints.read_training_state(folder)
    checkpoints.load_trainable_state(unwrapped_models(run), state["lora"], str(folder))
    run.optimizer.load_state_dict(state["optimizer"])
    run.lr_scheduler.load_state_dict(state["lr_scheduler"])
    if run.accelerator.process_index == 0:
        run.generator.set_state(state["generator"])
    else:
        # The checkpoint holds the main process's noise stream; every other process needs its own
        # (identical noise on every GPU would waste them), so it starts a fresh one for this step.
        run.generator.manual_seed(plan_noise_seed(run.settings.seed, run.accelerator.process_index, int(state["step"])))
    checkpoints.set_rng_state(state["rng"])
    scaler = getattr(run.accelerator, "scaler", None)
    if scaler is not None and state.get("scaler"):
        scaler.load_state_dict(state["scaler"])
    run.step = int(state["step"])
    run.losses = list(state["losses"])
    if run.accelerator.is_main_process:
        protocol.emit_event("log", message=f"resumed from {folder.name} at step {run.step}")


# ---------------------------------------------------------------------------------------------
# Stage 3: hooks run after optimizer steps


def save_checkpoint(plan: RunPlan, run: training_loop.TrainingRun) -> str:
    """Checkpoint the run at its current step (written by the main process; all processes wait)."""
    uri = plan.output.uri_of(f"{checkpoints.CHECKPOINT_DIR}/{checkpoints.step_dir_name(run.step)}")
    if run.accelerator.is_main_process:
        uri = checkpoints.save_checkpoint(
            plan.output, run.step, models=unwrapped_models(run), optimizer=run.optimizer,
            lr_scheduler=run.lr_scheduler, generator=run.generator, losses=run.losses,
            spec=plan.spec_dict, scaler=getattr(run.accelerator, "scaler", None),
        )
        protocol.emit_event("checkpoint", step=run.step, uri=uri)
    run.accelerator.wait_for_everyone()
    return uri


def checkpoint_hook(plan: RunPlan, saved: dict[str, int]) -> training_loop.StepHook:
    """Every `checkpointEvery` steps; `saved["step"]` records the last step checkpointed."""
    every = plan.spec.training.checkpoint_every

    def save(run: training_loop.TrainingRun) -> None:
        if every <= 0 or run.step % every or run.step >= run.settings.max_steps:
            return  # the final state is exported as the LoRA itself
        save_checkpoint(plan, run)
        saved["step"] = run.step

    return save


def park_text_encoders(model: model_loading.BaseModel, device: torch.device) -> None:
    if device.type == "cuda":
        model.text_encoder_one.to("cpu")
        model.text_encoder_two.to("cpu")
        torch.cuda.empty_cache()


@contextlib.contextmanager
def trained_pipeline(run: training_loop.TrainingRun) -> Iterator[Any]:
    """A pipeline with the LoRA being trained, its models in eval mode (and the text encoders back on
    the device) while it is used."""
    models = unwrapped_models(run)
    parked = run.prompt_cache is not None and run.accelerator.device.type == "cuda"
    if parked:
        run.model.text_encoder_one.to(run.accelerator.device)
        run.model.text_encoder_two.to(run.accelerator.device)
    pipe = model_loading.build_pipeline(
        run.model, unet=models["unet"], text_encoder_one=models.get("text_encoder_one"),
        text_encoder_two=models.get("text_encoder_two"),
    )
    for model in models.values():
        model.eval()
    try:
        yield pipe
    finally:
        for model in models.values():
            model.train()
        if parked:
            park_text_encoders(run.model, run.accelerator.device)


def save_validation(plan: RunPlan, run: training_loop.TrainingRun) -> list[Any]:
    """Sample the validation prompts with the current LoRA into validation/step-N.png; returns the
    images (PIL), one per prompt."""
    validation = plan.spec.validation
    relpath = f"{VALIDATION_DIR}/step-{run.step:06d}.png"
    with trained_pipeline(run) as pipe:
        images = validation_images.generate_images(
            pipe, plan.validation_prompts, resolution=plan.spec.training.resolution,
            num_inference_steps=validation.num_inference_steps, guidance_scale=validation.guidance_scale,
            seed=validation.seed, autocast=run.accelerator.autocast,
        )
    out_file = plan.output.local_dir / relpath
    out_file.parent.mkdir(parents=True, exist_ok=True)
    validation_images.image_grid(images).save(out_file)
    protocol.emit_event("validation", step=run.step, images=[relpath])
    return images


def quality_report(plan: RunPlan, run: training_loop.TrainingRun, images: list[Any]) -> dict[str, Any]:
    """The quality report of the trained LoRA (see quality_measurement)."""
    spec = plan.spec
    if plan.world_baseline is not None:
        baseline = plan.world_baseline

        def measure_world() -> dict[str, Any]:
            with trained_pipeline(run) as pipe:
                return quality_measurement.world_report(pipe, spec, baseline, run.accelerator.autocast)

        return quality_measurement.timed(measure_world, "builtin:world")
    instance = [example.image for example in plan.instance_images]
    return quality_measurement.timed(
        lambda: quality_measurement.similarity_report(spec, images, plan.validation_prompts, instance,
                                                      str(run.accelerator.device)),
        "validation images")


def validation_hook(plan: RunPlan) -> training_loop.StepHook:
    every = plan.spec.validation.every

    def validate(run: training_loop.TrainingRun) -> None:
        if every > 0 and run.step % every == 0 and run.step < run.settings.max_steps \
                and run.accelerator.is_main_process:
            save_validation(plan, run)

    return validate


# ---------------------------------------------------------------------------------------------
# Stage 4: export, publish, report


def export(plan: RunPlan, run: training_loop.TrainingRun, metrics: dict[str, Any]) -> dict[str, str]:
    """Write the LoRA files and training_args.json into staging; returns their relative paths and
    adds the LoRA's digest to `metrics`."""
    models = unwrapped_models(run)
    lora_dir = plan.output.local_dir / LORA_DIR
    lora_file = lora_export.save_diffusers_lora(
        lora_dir, models["unet"], models.get("text_encoder_one"), models.get("text_encoder_two"))
    kohya_file = lora_export.save_kohya_lora(lora_file, lora_dir / lora_export.kohya_file_name(plan.run_name))
    metrics[artifact_keys.LORA_SHA256] = lora_export.sha256_of(lora_file)
    files = {artifact_keys.LORA: f"{LORA_DIR}/{lora_file.name}",
             artifact_keys.KOHYA_LORA: f"{LORA_DIR}/{kohya_file.name}"}
    lora_export.write_training_args(
        plan.output.local_dir / TRAINING_ARGS_FILE, plan.spec_dict,
        {"name": plan.run_name, "metrics": metrics, "files": files},
    )
    return files


def publish_results(output: Output) -> None:
    """Everything staged, the LoRA folder last: whoever sees the LoRA can trust the rest is there."""
    entries = sorted(output.local_dir.iterdir(), key=lambda p: (p.name == LORA_DIR, p.name))
    for entry in entries:
        output.publish(entry.name)


def release_training_state(run: training_loop.TrainingRun) -> None:
    """Free what only further steps would use (gradients, optimizer moments, cached examples) before the
    final validation images and the export, which are where a run's memory peaks."""
    run.optimizer.zero_grad(set_to_none=True)
    run.optimizer.state.clear()
    run.instance_examples.clear()
    run.class_examples.clear()
    gc.collect()


def train(plan: RunPlan, started: float, stop: graceful_stop.StopRequest | None = None) -> dict[str, Any]:
    """Stages 2-4 for a checked plan; returns the result's artifacts and metrics.

    When `stop` is requested (SIGTERM) the loop ends after the step it is in, the run is
    checkpointed at that step and graceful_stop.TrainingStopped is raised.
    """
    run = build_training_run(plan)
    if plan.resume_from is not None:
        restore(run, plan.resume_from)
    first_step = run.step
    if run.accelerator.is_main_process:
        protocol.emit_event("log", message=(
            f"training {plan.run_name}: step {run.step} of {run.settings.max_steps}, "
            f"{len(run.instance_examples)} instance images, {len(run.class_examples)} class images, "
            f"{run.accelerator.num_processes} process(es) on {run.accelerator.device.type}"))
    loop_started = time.monotonic()
    saved = {"step": first_step}
    try:
        training_loop.train(run, after_step=[checkpoint_hook(plan, saved), validation_hook(plan)],
                            should_stop=lambda: stop is not None and stop.requested)
    except graceful_stop.TrainingStopped as stopped:
        if run.step > saved["step"]:  # progress since the last checkpoint: keep it
            stopped.checkpoint = save_checkpoint(plan, run)
        raise
    loop_seconds = time.monotonic() - loop_started
    run.accelerator.wait_for_everyone()
    if not run.accelerator.is_main_process:
        return {}
    release_training_state(run)
    final_images = save_validation(plan, run)
    metrics: dict[str, Any] = {artifact_keys.FINAL_LOSS: round(training_loop.recent_loss(run), 6),
                               artifact_keys.STEPS: run.step}
    if plan.spec.quality.enabled:
        metrics[quality_keys.QUALITY] = quality_report(plan, run, final_images)
    if run.step > first_step:
        metrics["stepsPerSecond"] = round((run.step - first_step) / loop_seconds, 3)
    files = export(plan, run, metrics)
    publish_results(plan.output)
    metrics["seconds"] = round(time.monotonic() - started, 1)
    return {
        "artifacts": {
            artifact_keys.LORA: plan.output.uri_of(files[artifact_keys.LORA]),
            artifact_keys.KOHYA_LORA: plan.output.uri_of(files[artifact_keys.KOHYA_LORA]),
            artifact_keys.VALIDATION_IMAGES: plan.output.uri_of(VALIDATION_DIR),
        },
        "metrics": metrics,
    }


def run(args: argparse.Namespace) -> int:
    """`sdxl-workload train --spec FILE [--output URI] [--resume latest|PATH]`."""
    started = time.monotonic()
    spec, spec_dict, name = load_spec(args.spec, getattr(args, "output", None))
    plan = check_everything(spec, spec_dict, name, getattr(args, "resume", None),
                            getattr(args, "max_instance_images", None))
    try:
        with graceful_stop.stop_on_sigterm() as stop:
            result = train(plan, started, stop)
    except graceful_stop.TrainingStopped as stopped:
        where = (f"checkpoint {stopped.checkpoint} holds it" if stopped.checkpoint
                 else "no step was made since the last checkpoint")
        # Retryable (not the permanent-failure exit code): the Job's next pod resumes from here.
        protocol.report_failure(
            "InternalError",
            f"stopped by {stop.signal_name or 'a signal'} at step {stopped.step} (pod eviction or node shutdown); "
            f"{where}; the next attempt resumes with --resume latest",
            getattr(args, "termination_log", None))
        return graceful_stop.EXIT_CODE
    finally:
        plan.output.close()
        shutil.rmtree(plan.output.local_dir, ignore_errors=True)
    if result:
        protocol.report_success(result["artifacts"], result["metrics"], getattr(args, "termination_log", None))
    return 0
