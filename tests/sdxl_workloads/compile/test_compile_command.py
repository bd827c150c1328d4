"""`sdxl-workload compile`: prepare (cpu/nvidia) end to end on builtin:tiny, the compile cache, bad input,
and the Neuron path with optimum-neuron replaced by a recording fake (it needs torch-neuronx and
neuronx-cc, which exist only in the Neuron image)."""

from __future__ import annotations

import json
import sys
import tempfile
import time
import types
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import save_file

from sdxl_contract import compile_key, exit_codes
from sdxl_workloads import cli
from sdxl_workloads.compile import compile_command, lora_input, pipeline_prepare
from sdxl_workloads.compile.runtime_id import default_runtime_id
from sdxl_workloads.protocol import WorkloadError
from sdxl_workloads.storage import atomic_write
from sdxl_workloads.storage import s3 as s3_backend
from sdxl_workloads.storage.errors import AlreadyPublished
from sdxl_workloads.storage.output import Output

pytestmark = pytest.mark.compat
PROMPT = "a photo of sks person"
TARGETS = ["to_q", "to_k", "to_v", "to_out.0"]


# ---------------------------------------------------------------------------------------------
# fixtures


@pytest.fixture(scope="module")
def lora_file(tiny_model_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A LoRA for builtin:tiny with random (non-zero) weights, saved as the trainer saves it."""
    from diffusers import StableDiffusionXLPipeline
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    torch.manual_seed(0)
    pipe = StableDiffusionXLPipeline.from_pretrained(tiny_model_path)
    pipe.unet.add_adapter(LoraConfig(r=4, lora_alpha=4, target_modules=TARGETS))
    with torch.no_grad():
        for name, param in pipe.unet.named_parameters():
            if "lora_" in name:
                param.normal_(0.0, 0.2)  # peft starts B at zero; a zero LoRA would prove nothing
    folder = tmp_path_factory.mktemp("lora")
    StableDiffusionXLPipeline.save_lora_weights(folder, unet_lora_layers=get_peft_model_state_dict(pipe.unet))
    return folder / lora_input.DEFAULT_WEIGHT_NAME


@pytest.fixture
def staging_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Route temp folders (the compile's staging) to a folder the test can inspect afterwards."""
    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


@dataclass
class Run:
    rc: int
    result: dict[str, Any]
    events: list[dict[str, Any]]


def write_spec(folder: Path, **spec: Any) -> Path:
    path = folder / "deployment.yaml"
    manifest = {"apiVersion": "sdxl.io/v1alpha1", "kind": "SDXLDeployment", "metadata": {"name": "alice"},
                "spec": {"baseModel": "builtin:tiny", "accelerator": "cpu", **spec}}
    path.write_text(yaml.safe_dump(manifest))
    return path


def run_compile(capsys: pytest.CaptureFixture[str], tmp_path: Path, spec: Path, store: Path | str,
                *extra: str) -> Run:
    log = tmp_path / "termination-log"
    log.unlink(missing_ok=True)
    capsys.readouterr()
    rc = cli.main(["compile", "--spec", str(spec), "--store", str(store), "--termination-log", str(log), *extra])
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    return Run(rc, json.loads(log.read_text()), events)


def expected_key(lora: Path, accelerator: str = "cpu", scale: float = 1.0,
                 shapes: dict[str, int] | None = None, auto_cast_type: str | None = None) -> str:
    return compile_key.compile_key(
        base_model="builtin:tiny", base_revision=None,
        lora=compile_key.lora_digest(lora_input.file_sha256(lora), None), lora_scale=scale,
        accelerator=accelerator, shapes=shapes, auto_cast_type=auto_cast_type,
        runtime_id=default_runtime_id(accelerator),
    )


def render(pipe: Any) -> np.ndarray:
    generator = torch.Generator().manual_seed(7)
    images = pipe(PROMPT, num_inference_steps=2, guidance_scale=5.0, height=64, width=64,
                  generator=generator, output_type="np").images
    return np.asarray(images[0])


def compiled_dirs(store: Path) -> list[Path]:
    folder = store / "compiled"
    return sorted(folder.iterdir()) if folder.exists() else []


# ---------------------------------------------------------------------------------------------
# prepare (cpu / nvidia)


@pytest.mark.slow
def test_prepare_on_cpu_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str], lora_file: Path,
                                   tiny_model_path: Path, staging_tmp: Path) -> None:
    from diffusers import StableDiffusionXLPipeline

    torch.set_num_threads(1)
    store = tmp_path / "store"
    spec = write_spec(tmp_path, lora=str(lora_file), loraScale=0.7)
    run = run_compile(capsys, tmp_path, spec, store)

    assert run.rc == 0, run.result
    key = expected_key(lora_file, scale=0.7)
    compiled = store / "compiled" / key
    assert run.result["status"] == "Succeeded"
    assert run.result["artifacts"] == {"compiled": str(compiled)}
    assert run.result["metrics"]["key"] == key and run.result["metrics"]["cacheHit"] is False
    assert (compiled / "COMPLETE").read_text().strip() == key
    info = json.loads((compiled / "compile_info.json").read_text())
    assert info["key"] == key and info["loraSha256"] == lora_input.file_sha256(lora_file)
    assert info["torchDtype"] == "float32" and info["format"] == "diffusers" and info["loraScale"] == 0.7
    assert info["keyInputs"]["lora"] == "sha256:" + info["loraSha256"]
    assert info["versions"]["diffusers"] and info["durationSeconds"] >= 0
    stages = [e["stage"] for e in run.events if e["event"] == "progress"]
    assert [s for s in ("resolving", "loading", "fusing", "saving", "publishing") if s in stages] == [
        "resolving", "loading", "fusing", "saving", "publishing"]
    assert all(e["totalSteps"] == compile_command.TOTAL_STEPS for e in run.events if e["event"] == "progress")
    assert list(staging_tmp.iterdir()) == []  # staging removed

    # The prepared folder is an ordinary pipeline with the LoRA already in its weights: it loads
    # without peft adapters and renders what base + LoRA fused in-process renders.
    prepared = StableDiffusionXLPipeline.from_pretrained(compiled)
    assert not any("lora" in name for name, _ in prepared.unet.named_parameters())
    reference = StableDiffusionXLPipeline.from_pretrained(tiny_model_path)
    base_image = render(reference)
    reference.load_lora_weights(str(lora_file.parent), weight_name=lora_file.name)
    reference.fuse_lora(lora_scale=0.7)
    fused_image = render(reference)
    prepared_image = render(prepared)
    np.testing.assert_allclose(prepared_image, fused_image, atol=1e-5)
    assert np.abs(prepared_image - base_image).max() > 1e-3, "the LoRA changed nothing: the test proves nothing"


def test_prepare_for_nvidia_saves_fp16_weights(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                               lora_file: Path) -> None:
    store = tmp_path / "store"
    run = run_compile(capsys, tmp_path, write_spec(tmp_path, lora=str(lora_file), accelerator="nvidia"), store)
    assert run.rc == 0, run.result
    compiled = Path(run.result["artifacts"]["compiled"])
    assert compiled.name == expected_key(lora_file, accelerator="nvidia")
    header = lora_input.read_safetensors_header(compiled / "unet" / "diffusion_pytorch_model.safetensors")
    assert {entry["dtype"] for entry in header.values()} == {"F16"}
    assert json.loads((compiled / "compile_info.json").read_text())["torchDtype"] == "float16"


def test_a_second_run_is_a_cache_hit_that_loads_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                        lora_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = tmp_path / "store"
    spec = write_spec(tmp_path, lora=str(lora_file))
    first = run_compile(capsys, tmp_path, spec, store)
    assert first.rc == 0 and first.result["metrics"]["cacheHit"] is False
    marker = store / "compiled" / first.result["metrics"]["key"] / "COMPLETE"
    before = marker.stat().st_mtime_ns

    def must_not_run(*_: Any, **__: Any) -> Any:
        raise AssertionError("a cache hit must not load or check models")

    for module, name in [(pipeline_prepare, "load_base_pipeline"), (pipeline_prepare, "fuse_lora"),
                         (lora_input, "check_lora_fits_base"), (compile_command, "resolve_model")]:
        monkeypatch.setattr(module, name, must_not_run)
    second = run_compile(capsys, tmp_path, spec, store)
    assert second.rc == 0, second.result
    assert second.result["metrics"]["cacheHit"] is True
    assert second.result["artifacts"] == first.result["artifacts"]
    assert marker.stat().st_mtime_ns == before
    assert not [e for e in second.events if e.get("stage") in ("loading", "fusing", "saving")]

    # With --key (the operator's case) the same LoRA is a hit too, once its bytes are hashed.
    key = first.result["metrics"]["key"]
    third = run_compile(capsys, tmp_path, spec, store, "--key", key)
    assert third.rc == 0 and third.result["metrics"] == {**third.result["metrics"], "key": key, "cacheHit": True}


@pytest.mark.slow
def test_prepare_with_an_s3_store_and_lora(tmp_path: Path, capsys: pytest.CaptureFixture[str], lora_file: Path,
                                           s3_bucket: str, s3_server: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Production stores are S3: the LoRA is fetched from it, the artifact published to it, and found there."""
    import boto3

    monkeypatch.setattr(s3_backend, "cache_root", lambda: tmp_path / "cache")  # S3 downloads go here
    s3 = boto3.client("s3", endpoint_url=s3_server, region_name="us-east-1")
    s3.upload_file(str(lora_file), s3_bucket, "loras/alice/pytorch_lora_weights.safetensors")
    lora_uri = f"s3://{s3_bucket}/loras/alice/pytorch_lora_weights.safetensors"
    store = f"s3://{s3_bucket}/store"
    spec = write_spec(tmp_path, lora=lora_uri)

    first = run_compile(capsys, tmp_path, spec, store)
    assert first.rc == 0, first.result
    key = expected_key(lora_file)
    assert first.result["artifacts"] == {"compiled": f"{store}/compiled/{key}"}
    objects = {o["Key"] for o in s3.list_objects_v2(Bucket=s3_bucket, Prefix="store/")["Contents"]}
    assert {f"store/compiled/{key}/COMPLETE", f"store/compiled/{key}/model_index.json",
            f"store/compiled/{key}/compile_info.json"} <= objects

    monkeypatch.setattr(pipeline_prepare, "load_base_pipeline", lambda *_: pytest.fail("cache hit loads nothing"))
    second = run_compile(capsys, tmp_path, spec, store)
    assert second.rc == 0 and second.result["metrics"]["cacheHit"] is True


def test_an_incomplete_artifact_is_rebuilt(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                           lora_file: Path) -> None:
    """A folder without COMPLETE (an upload cut short) does not count as a cache hit."""
    store = tmp_path / "store"
    key = expected_key(lora_file)
    partial = store / "compiled" / key
    (partial / "unet").mkdir(parents=True)
    (partial / "unet" / "diffusion_pytorch_model.safetensors").write_bytes(b"truncated")
    run = run_compile(capsys, tmp_path, write_spec(tmp_path, lora=str(lora_file)), store)
    assert run.rc == 0 and run.result["metrics"]["cacheHit"] is False
    assert (partial / "COMPLETE").is_file()
    assert (partial / "unet" / "diffusion_pytorch_model.safetensors").stat().st_size > 1000


def test_a_complete_artifact_without_its_record_is_rebuilt(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                            lora_file: Path) -> None:
    """COMPLETE but no compile_info.json: nothing says which LoRA it holds, so it is not a hit."""
    store = tmp_path / "store"
    key = expected_key(lora_file)
    (store / "compiled" / key).mkdir(parents=True)
    (store / "compiled" / key / "COMPLETE").write_text(key + "\n")
    run = run_compile(capsys, tmp_path, write_spec(tmp_path, lora=str(lora_file)), store)
    assert run.rc == 0 and run.result["metrics"]["cacheHit"] is False, run.result
    info = json.loads((store / "compiled" / key / "compile_info.json").read_text())
    assert info["loraSha256"] == lora_input.file_sha256(lora_file)


# ---------------------------------------------------------------------------------------------
# bad input


def _foreign_lora(folder: Path, *, missing: bool) -> Path:
    """An SD 1.5-style LoRA: its attention layers are where the tiny SDXL UNet has none (missing), or
    where it has them but with other widths."""
    block = "unet.down_blocks.0" if missing else "unet.down_blocks.1"
    width = 320
    tensors = {}
    for target in TARGETS:
        prefix = f"{block}.attentions.0.transformer_blocks.0.attn1.{target}"
        tensors[f"{prefix}.lora_A.weight"] = torch.zeros(4, width)
        tensors[f"{prefix}.lora_B.weight"] = torch.zeros(width, 4)
    path = folder / ("sd15_missing.safetensors" if missing else "sd15_wrong_width.safetensors")
    save_file(tensors, str(path))
    return path


def _case_missing_file(tmp: Path, lora: Path) -> dict[str, Any]:
    return {"lora": str(tmp / "nowhere" / "pytorch_lora_weights.safetensors")}


def _case_empty_folder(tmp: Path, lora: Path) -> dict[str, Any]:
    (tmp / "empty").mkdir()
    return {"lora": str(tmp / "empty")}


def _case_pickle(tmp: Path, lora: Path) -> dict[str, Any]:
    (tmp / "lora.bin").write_bytes(b"\x80\x04")
    return {"lora": str(tmp / "lora.bin")}


def _case_garbage(tmp: Path, lora: Path) -> dict[str, Any]:
    (tmp / "garbage.safetensors").write_bytes(b"\xff" * 64)
    return {"lora": str(tmp / "garbage.safetensors")}


def _case_full_model(tmp: Path, lora: Path) -> dict[str, Any]:
    save_file({"conv_in.weight": torch.zeros(8, 4, 3, 3)}, str(tmp / "unet.safetensors"))
    return {"lora": str(tmp / "unet.safetensors")}


BAD_INPUTS: list[tuple[str, Callable[[Path, Path], dict[str, Any]], list[str], str]] = [
    ("missing LoRA", _case_missing_file, [], "safetensors: no such file"),
    ("folder without a LoRA", _case_empty_folder, [], "not exactly one .safetensors"),
    ("pickled LoRA", _case_pickle, [], "a pickled .bin/.pt file can run code"),
    ("not safetensors", _case_garbage, [], "not a valid safetensors file"),
    ("full model, not a LoRA", _case_full_model, [], "holds no LoRA weights"),
    ("LoRA for layers the base lacks", lambda tmp, _: {"lora": str(_foreign_lora(tmp, missing=True))}, [],
     "target layers the base does not have"),
    ("LoRA with other widths", lambda tmp, _: {"lora": str(_foreign_lora(tmp, missing=False))}, [],
     "other sizes than the base's layers"),
    ("height not a multiple of 8", lambda _, lora: {"lora": str(lora), "accelerator": "neuron",
                                                    "neuron": {"height": 1020}}, [], "multiple of 8"),
    ("unknown accelerator", lambda _, lora: {"lora": str(lora), "accelerator": "tpu"}, [], "neuron, nvidia, cpu"),
    ("neuron settings on cpu", lambda _, lora: {"lora": str(lora), "neuron": {"height": 768}}, [],
     "only allowed with spec.accelerator: neuron"),
    ("no LoRA at all", lambda _, lora: {"fineTune": "alice-v1"}, [], "set spec.lora"),
    ("digest mismatch", lambda _, lora: {"lora": str(lora), "loraSha256": "0" * 64}, [], "was expected"),
    ("malformed key", lambda _, lora: {"lora": str(lora)}, ["--key", "../../etc"], "--key"),
    ("unknown base model", lambda _, lora: {"lora": str(lora), "baseModel": "./no/such/model"}, [],
     "not found"),
]


@pytest.mark.parametrize(("case", "make", "flags", "words"), BAD_INPUTS, ids=[c[0] for c in BAD_INPUTS])
def test_bad_input_fails_cleanly(case: str, make: Callable[[Path, Path], dict[str, Any]], flags: list[str],
                                 words: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                 lora_file: Path, staging_tmp: Path) -> None:
    store = tmp_path / "store"
    run = run_compile(capsys, tmp_path, write_spec(tmp_path, **make(tmp_path, lora_file)), store, *flags)
    assert run.rc == 2
    assert run.result["status"] == "Failed" and run.result["reason"] == "InvalidInput"
    assert words in run.result["message"]
    assert compiled_dirs(store) == []
    assert list(staging_tmp.iterdir()) == []


def test_a_failure_while_saving_leaves_nothing_behind(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                      lora_file: Path, staging_tmp: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    def half_save(pipe: Any, output_dir: Path, accelerator: str) -> str:
        (output_dir / "unet").mkdir(parents=True)
        (output_dir / "unet" / "diffusion_pytorch_model.safetensors").write_bytes(b"half")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(pipeline_prepare, "save_prepared_pipeline", half_save)
    store = tmp_path / "store"
    log = tmp_path / "termination-log"
    code = cli.main(["compile", "--spec", str(write_spec(tmp_path, lora=str(lora_file))), "--store", str(store),
                     "--termination-log", str(log)])
    assert code == exit_codes.RETRYABLE_FAILURE_EXIT_CODE  # a full disk may not be there on the next attempt
    result = json.loads(log.read_text())
    assert result["reason"] == "InternalError" and "No space left on device" in result["message"]
    assert compiled_dirs(store) == []
    assert list(staging_tmp.iterdir()) == []


def test_lora_fit_check_accepts_the_matching_lora(lora_file: Path, tiny_model_path: Path) -> None:
    layers = lora_input.check_lora_fits_base(lora_file, str(tiny_model_path), None)
    assert layers > 0 and layers % 2 == 0  # A and B of each adapted layer


def test_lora_fit_check_reads_kohya_files(lora_file: Path, tiny_model_path: Path, tmp_path: Path) -> None:
    """The trainer's kohya/A1111 copy is converted by diffusers and checked layer by layer the same way."""
    from sdxl_workloads.train.lora_export import save_kohya_lora

    kohya = save_kohya_lora(lora_file, tmp_path / "alice_kohya.safetensors")
    assert lora_input.check_lora_fits_base(kohya, str(tiny_model_path), None) == \
        lora_input.check_lora_fits_base(lora_file, str(tiny_model_path), None)


def test_lora_folder_resolves_to_its_weights_file(lora_file: Path) -> None:
    assert lora_input.locate_lora_file(lora_file.parent) == lora_file
    with pytest.raises(WorkloadError, match="does not exist"):
        lora_input.locate_lora_file(lora_file.parent / "other.safetensors")


# ---------------------------------------------------------------------------------------------
# Neuron, with optimum-neuron faked


@dataclass
class FakeLoRAAdapterArguments:
    model_ids: Any = None
    weight_names: Any = None
    adapter_names: Any = None
    scales: Any = None


@dataclass
class FakeInputShapesArguments:
    batch_size: int | None = None
    height: int | None = None
    width: int | None = None
    num_images_per_prompt: int | None = None
    sequence_length: int | None = None


class FakeOptimum:
    """Stands in for the optimum-neuron modules neuron_export imports; records every call."""

    def __init__(self, fail_with: BaseException | None = None, seconds: float = 0.0) -> None:
        self.calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []
        self.fail_with = fail_with
        self.seconds = seconds  # how long the "compile" takes

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        modules = {
            "optimum.exporters.neuron": {"main_export": self.main_export,
                                         "normalize_diffusers_input_shapes": self.normalize},
            "optimum.neuron": {"NeuronStableDiffusionXLPipeline": object},
            "optimum.neuron.utils": {},
            "optimum.neuron.utils.argument_utils": {"LoRAAdapterArguments": FakeLoRAAdapterArguments,
                                                    "InputShapesArguments": FakeInputShapesArguments},
            "optimum.neuron.utils.instance": {"align_compilation_target": self.align},
        }
        for name, attrs in modules.items():
            module = types.ModuleType(name)
            for attr, value in attrs.items():
                setattr(module, attr, value)
            monkeypatch.setitem(sys.modules, name, module)

    def align(self, *args: Any, **kwargs: Any) -> str:
        self.calls.append(("align_compilation_target", args, kwargs))
        return "trn1"

    def normalize(self, shapes: dict[str, Any]) -> dict[str, Any]:
        self.calls.append(("normalize_diffusers_input_shapes", (shapes,), {}))
        return {"unet": {"batch_size": shapes["batch_size"] * shapes["num_images_per_prompt"],
                         "height": shapes["height"] // 8, "width": shapes["width"] // 8}}

    def main_export(self, **kwargs: Any) -> None:
        self.calls.append(("main_export", (), kwargs))
        time.sleep(self.seconds)
        if self.fail_with is not None:
            raise self.fail_with
        output = Path(kwargs["output"])
        for component in ("text_encoder", "text_encoder_2", "unet", "vae_encoder", "vae_decoder"):
            (output / component).mkdir(parents=True, exist_ok=True)
            (output / component / "model.neuron").write_bytes(b"neff")
            (output / component / "config.json").write_text("{}")
        (output / "model_index.json").write_text("{}")


NEURON_SPEC = {"accelerator": "neuron", "loraScale": 0.8,
               "neuron": {"batchSize": 2, "height": 768, "width": 1024, "numImagesPerPrompt": 1,
                          "autoCastType": "fp16"}}


def test_neuron_compile_passes_exactly_these_arguments(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                       lora_file: Path, tiny_model_path: Path,
                                                       staging_tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeOptimum(seconds=0.3)
    fake.install(monkeypatch)
    monkeypatch.setattr(compile_command, "HEARTBEAT_SECONDS", 0.05)
    published: list[tuple[str, bool]] = []
    real_publish = Output.publish

    def spy_publish(self: Output, relpath: str = "") -> list[str]:
        complete = Path(self.uri_of(relpath.split("/COMPLETE")[0])) / "COMPLETE"
        published.append((relpath, complete.exists()))
        return real_publish(self, relpath)

    monkeypatch.setattr(Output, "publish", spy_publish)
    store = tmp_path / "store"
    run = run_compile(capsys, tmp_path, write_spec(tmp_path, lora=str(lora_file), **NEURON_SPEC), store)

    assert run.rc == 0, run.result
    shapes = {"batchSize": 2, "height": 768, "width": 1024, "numImagesPerPrompt": 1}
    key = expected_key(lora_file, accelerator="neuron", scale=0.8, shapes=shapes, auto_cast_type="fp16")
    compiled = store / "compiled" / key
    assert run.result["artifacts"] == {"compiled": str(compiled)}
    assert "optimum-neuron=" in json.loads((compiled / "compile_info.json").read_text())["runtimeId"]

    names = [name for name, _, _ in fake.calls]
    assert names == ["align_compilation_target", "normalize_diffusers_input_shapes", "main_export"]
    assert fake.calls[0][1:] == (("inf2",), {"override": True})
    assert fake.calls[1][1][0] == asdict(FakeInputShapesArguments(batch_size=2, height=768, width=1024,
                                                                  num_images_per_prompt=1))
    kwargs = fake.calls[2][2]
    staged_output = kwargs.pop("output")
    assert staged_output.parts[-2:] == ("compiled", key) and staged_output.is_relative_to(staging_tmp)
    # The LoRA goes in as a copy with its canonical name, inside the staging folder.
    staged_lora = staged_output.parents[1] / "inputs" / "lora"
    assert kwargs == {
        "model_name_or_path": str(tiny_model_path),
        "task": "text-to-image",
        "library_name": "diffusers",
        "revision": "main",
        "disable_neuron_cache": True,
        "inline_weights_to_neff": True,
        "do_validation": False,
        "compiler_workdir": None,
        "submodels": {"unet": None},
        "compiler_kwargs": {"auto_cast": "matmul", "auto_cast_type": "fp16", "instance_type": "inf2"},
        "lora_args": FakeLoRAAdapterArguments(model_ids=[str(staged_lora)], weight_names=[lora_file.name],
                                              adapter_names=["finetune"], scales=[0.8]),
        "unet": {"batch_size": 2, "height": 96, "width": 128},
    }

    # Everything is published before the COMPLETE marker, which goes last and alone.
    assert published == [(f"compiled/{key}", False), (f"compiled/{key}/COMPLETE", False)]
    assert (compiled / "COMPLETE").is_file() and (compiled / "unet" / "model.neuron").is_file()
    info = json.loads((compiled / "compile_info.json").read_text())
    assert info["format"] == "neuron" and info["shapes"] == shapes
    assert info["compiler"] == {"autoCast": "matmul", "autoCastType": "fp16", "target": "inf2"}
    # The long compile call keeps reporting progress (with the time so far) while it runs.
    beats = [e for e in run.events if e.get("stage") == "compiling" and "elapsedSeconds" in e]
    assert len(beats) >= 2 and all(e["step"] == 3 and e["totalSteps"] == 5 for e in beats)
    assert list(staging_tmp.iterdir()) == []


@pytest.mark.parametrize(("error", "reason"), [
    (RuntimeError("neuronx-cc failed with -9"), "OutOfMemory"),
    (RuntimeError("[TEN404] Internal tensorizer error"), "CompileFailed"),
])
def test_a_failed_neuron_compile_publishes_nothing(error: BaseException, reason: str, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str], lora_file: Path,
                                                   staging_tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    FakeOptimum(fail_with=error).install(monkeypatch)
    store = tmp_path / "store"
    run = run_compile(capsys, tmp_path, write_spec(tmp_path, lora=str(lora_file), **NEURON_SPEC), store)
    assert run.rc == 2
    assert run.result["reason"] == reason and str(error) in run.result["message"]
    assert compiled_dirs(store) == []
    assert list(staging_tmp.iterdir()) == []


def test_the_server_loads_a_compiled_folder_with_from_pretrained(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from sdxl_workloads.models import neuron_export

    loaded: list[tuple[tuple[Any, ...], dict[str, Any]]] = []

    class FakePipeline:
        @classmethod
        def from_pretrained(cls, *args: Any, **kwargs: Any) -> str:
            loaded.append((args, kwargs))
            return "pipeline"

    FakeOptimum().install(monkeypatch)
    monkeypatch.setattr(sys.modules["optimum.neuron"], "NeuronStableDiffusionXLPipeline", FakePipeline)
    assert neuron_export.load_neuron_pipeline(tmp_path / "compiled" / "k") == "pipeline"
    assert loaded == [((str(tmp_path / "compiled" / "k"),), {})]


# ---------------------------------------------------------------------------------------------
# no digest from outside is trusted; concurrent compiles of one key


def _cached_artifact(capsys: pytest.CaptureFixture[str], tmp_path: Path, lora_file: Path, store: Path) -> str:
    first = run_compile(capsys, tmp_path, write_spec(tmp_path, lora=str(lora_file)), store)
    assert first.rc == 0 and first.result["metrics"]["cacheHit"] is False, first.result
    return str(first.result["metrics"]["key"])


def test_a_forged_sha256_is_refused_before_any_cache_hit(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                         lora_file: Path) -> None:
    """A tenant names someone else's digest next to their own LoRA: the bytes decide, not the claim."""
    store = tmp_path / "store"
    key = _cached_artifact(capsys, tmp_path, lora_file, store)
    victim_sha = lora_input.file_sha256(lora_file)
    own = tmp_path / "mine" / lora_input.DEFAULT_WEIGHT_NAME
    own.parent.mkdir()
    save_file({"unet.x.lora_A.weight": torch.ones(4, 4)}, str(own))

    for extra in ([], ["--key", key]):
        forged = run_compile(capsys, tmp_path, write_spec(tmp_path, lora=str(own), loraSha256=victim_sha),
                             store, *extra)
        assert forged.rc == 2 and forged.result["reason"] == "InvalidInput", forged.result
        assert victim_sha in forged.result["message"] and lora_input.file_sha256(own) in forged.result["message"]
        assert "compiled" not in forged.result.get("artifacts", {})


def test_an_unreadable_lora_with_a_known_sha256_and_key_is_not_a_cache_hit(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], lora_file: Path, s3_bucket: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """`lora: s3://nobody/x.safetensors` plus a known digest and key used to answer `cacheHit: true`."""
    monkeypatch.setattr(s3_backend, "cache_root", lambda: tmp_path / "cache")
    store = tmp_path / "store"
    key = _cached_artifact(capsys, tmp_path, lora_file, store)
    sha = lora_input.file_sha256(lora_file)
    spec = write_spec(tmp_path, lora=f"s3://{s3_bucket}/nobody/x.safetensors", loraSha256=sha)
    run = run_compile(capsys, tmp_path, spec, store, "--key", key)
    assert run.rc == 2 and run.result["reason"] == "InvalidInput", run.result
    assert "nobody/x.safetensors" in run.result["message"]


def test_a_complete_artifact_built_from_other_bytes_is_not_served(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                                  lora_file: Path) -> None:
    """A key that names an artifact built from another LoRA (a URI-keyed file that changed, or a key
    taken from elsewhere) is refused with both digests, and the artifact is left as it was."""
    store = tmp_path / "store"
    key = _cached_artifact(capsys, tmp_path, lora_file, store)
    info_file = store / "compiled" / key / compile_command.INFO_FILE
    before = info_file.read_bytes()
    other = tmp_path / "other" / lora_input.DEFAULT_WEIGHT_NAME
    other.parent.mkdir()
    save_file({"unet.x.lora_A.weight": torch.zeros(4, 4)}, str(other))
    run = run_compile(capsys, tmp_path, write_spec(tmp_path, lora=str(other)), store, "--key", key)
    assert run.rc == 2 and run.result["reason"] == "InvalidInput", run.result
    assert lora_input.file_sha256(lora_file) in run.result["message"]
    assert lora_input.file_sha256(other) in run.result["message"]
    assert info_file.read_bytes() == before


@pytest.mark.slow
def test_a_compile_that_loses_the_publish_race_reuses_the_winners_artifact(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], lora_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two compiles of one key: B checks the cache (empty), builds, and meanwhile A compiles and
    publishes the same key. B ends cleanly on A's artifact (one winner, files untouched), where it
    used to fail with a raw `Directory not empty`."""
    store = tmp_path / "store"
    spec = write_spec(tmp_path, lora=str(lora_file))
    real_build = compile_command._build
    winner: list[Run] = []

    started_a: list[bool] = []

    def build_while_another_compile_finishes(*args: Any) -> dict[str, Any]:
        details = real_build(*args)
        if not started_a:  # A runs (whole, in this process) while B sits between its build and publish
            started_a.append(True)
            winner.append(run_compile(capsys, tmp_path / "a", spec, store))
        return details

    (tmp_path / "a").mkdir()
    monkeypatch.setattr(compile_command, "_build", build_while_another_compile_finishes)
    loser = run_compile(capsys, tmp_path, spec, store)
    assert winner and winner[0].rc == 0 and winner[0].result["metrics"]["cacheHit"] is False
    assert loser.rc == 0, loser.result
    assert loser.result["artifacts"] == winner[0].result["artifacts"]
    assert loser.result["metrics"]["cacheHit"] is True
    folder = Path(winner[0].result["artifacts"]["compiled"])
    assert (folder / "COMPLETE").is_file() and compiled_dirs(store) == [folder]
    assert not [p for p in folder.parent.iterdir() if p.name.startswith(".")], "no temp folder left behind"


def test_a_folder_rename_that_loses_the_race_reports_already_published(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The storage side of the race: both writers found no folder and copied theirs; the second
    rename gets AlreadyPublished (a named StorageError) and the winner's files stay as they were."""
    dest = tmp_path / "store"
    outputs = [Output(str(dest)), Output(str(dest))]
    for index, out in enumerate(outputs):
        (out.local_dir / "compiled" / "k").mkdir(parents=True)
        (out.local_dir / "compiled" / "k" / "weights").write_text(f"writer {index}")
    real_fsync_tree = atomic_write.fsync_tree
    import threading

    barrier = threading.Barrier(2, timeout=30)

    def fsync_then_meet(folder: Path) -> None:
        real_fsync_tree(folder)
        barrier.wait()  # both copies are staged before either renames: the race, made certain

    monkeypatch.setattr(atomic_write, "fsync_tree", fsync_then_meet)
    results: list[Any] = [None, None]

    def publish(index: int) -> None:
        try:
            results[index] = outputs[index].publish("compiled/k")
        except Exception as err:  # the assertion below says which
            results[index] = err

    threads = [threading.Thread(target=publish, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    lost = [r for r in results if isinstance(r, BaseException)]
    assert len(lost) == 1 and isinstance(lost[0], AlreadyPublished), results
    assert lost[0].reason == "StorageError" and "already published by another writer" in lost[0].message
    winner = results.index(next(r for r in results if not isinstance(r, BaseException)))
    assert (dest / "compiled" / "k" / "weights").read_text() == f"writer {winner}"
    assert sorted(p.name for p in (dest / "compiled").iterdir()) == ["k"], "the loser's temp folder is gone"
    for out in outputs:
        out.close()
