"""The demo's comparison of the base model with a `builtin:world` fine-tune: the contact sheet's
grid, and the quality report from status.quality or from the served images.

The last test trains with the demo's own settings (crds/examples/finetune-world.yaml) and checks
that the fine-tune draws the subject more often than the base model for the demo's prompts."""

from __future__ import annotations

import contextlib
import io
import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from PIL import Image

from sdxl_sandbox.contact_sheet import (
    CELL_PIXELS,
    HEADER_HEIGHT,
    LABEL_WIDTH,
    render_contact_sheet,
    sheet_size,
)
from sdxl_sandbox.subject_comparison import (
    COLUMN_TITLES,
    Comparison,
    adapter_ready,
    compares_world_subject,
    measured_quality,
    quality_report,
    world_model_is_pretrained,
)
from sdxl_workloads.builtin.small_world import SUBJECT_HAIR, SUBJECT_PATTERN, SUBJECT_SHIRT, Scene, draw_scene
from sdxl_workloads.builtin.world_quality import CLASS_PROMPT, subject_prompts

REPO_ROOT = Path(__file__).resolve().parents[2]

WORLD_EXAMPLE = REPO_ROOT / "crds" / "examples" / "finetune-world.yaml"
MIN_DEMO_IDENTITY = 0.5
DEPLOYMENT_EXAMPLE = REPO_ROOT / "crds" / "examples" / "deployment-world-cpu.yaml"


def png(scene: Scene) -> bytes:
    buffer = io.BytesIO()
    draw_scene(scene).save(buffer, format="PNG")
    return buffer.getvalue()


def comparison(tuned_shows_subject: bool) -> Comparison:
    """Drawn pictures: the base model's show a stranger in the setting asked for; the fine-tune's
    show the subject (in the setting asked for) when `tuned_shows_subject`, the class prompt too."""
    settings = {prompt: setting for setting, prompt in subject_prompts().items()}
    stranger = Scene(hair="red", shirt="blue", pattern="plain", pose="arms down", setting="beach")
    subject = Scene(hair=SUBJECT_HAIR, shirt=SUBJECT_SHIRT, pattern=SUBJECT_PATTERN, pose="arms down",
                    setting="beach")
    base, tuned = {}, {}
    for prompt, setting in [*settings.items(), (CLASS_PROMPT, "city")]:
        base[prompt] = [png(Scene(**{**stranger.__dict__, "setting": setting}))] * 2
        who = subject if tuned_shows_subject else stranger
        tuned[prompt] = [png(Scene(**{**who.__dict__, "setting": setting}))] * 2
    return Comparison(settings=settings, class_prompt=CLASS_PROMPT, base=base, tuned=tuned)


def test_the_contact_sheet_is_a_labelled_grid_of_prompts_by_models() -> None:
    rows = comparison(True).rows()
    sheet = render_contact_sheet(COLUMN_TITLES, rows)
    assert sheet.size == sheet_size(5, 2)
    assert [prompt for prompt, _ in rows] == [*subject_prompts().values(), CLASS_PROMPT]
    # The fine-tune's cell of the first row is the served image, scaled up.
    left = LABEL_WIDTH + CELL_PIXELS
    cell = np.asarray(sheet)[HEADER_HEIGHT:HEADER_HEIGHT + CELL_PIXELS, left:left + CELL_PIXELS]
    served = np.asarray(Image.open(io.BytesIO(rows[0][1][1])).convert("RGB").resize((CELL_PIXELS,) * 2,
                                                                                    Image.Resampling.NEAREST))
    assert np.array_equal(cell, served)


def test_a_row_with_a_missing_image_is_refused() -> None:
    with pytest.raises(ValueError, match="1 images for 2 columns"):
        render_contact_sheet(COLUMN_TITLES, [("a prompt", [b""])])


def test_measured_quality_reads_the_served_images() -> None:
    measured = measured_quality(comparison(True))
    assert measured["base"] == {"identity": 0.0, "promptFidelity": 1.0}
    assert measured["tuned"] == {"identity": 1.0, "promptFidelity": 1.0, "classDrift": 1.0}
    assert measured_quality(comparison(False))["tuned"]["identity"] == 0.0


def test_the_report_prefers_status_quality_and_always_shows_three_numbers() -> None:
    measured = measured_quality(comparison(True))
    from_images = "\n".join(quality_report("world-subject", None, measured, 4))
    assert "from the served images, 4 per prompt" in from_images
    from_status = "\n".join(quality_report("world-subject", {"identity": 0.9, "promptFidelity": 0.85,
                                                              "classDrift": 0.05}, measured, 4))
    assert "from status.quality" in from_status
    assert re.search(r"identity\s+0\.90\s+\(base model: 0\.00\)", from_status)
    assert re.search(r"prompt fidelity\s+0\.85", from_status)
    assert re.search(r"class drift\s+\+0\.05", from_status)
    for report in (from_images, from_status):
        assert len(re.findall(r"^\s+(identity|prompt fidelity|class drift)\s+[-+]?\d\.\d\d", report, re.M)) == 3


def test_the_demo_deployment_compares_its_world_fine_tune_once_the_adapter_is_served() -> None:
    deployment = yaml.safe_load(DEPLOYMENT_EXAMPLE.read_text())
    finetune = yaml.safe_load(WORLD_EXAMPLE.read_text())
    assert compares_world_subject(deployment) == finetune["metadata"]["name"]
    assert compares_world_subject({"spec": {"fineTune": "tiny-subject"}}) is None
    assert compares_world_subject({"spec": {"fineTunes": ["x"], "baseModel": "builtin:tiny"}}) is None
    assert not adapter_ready(deployment, "world-subject")
    served = {**deployment, "status": {"adapters": [{"name": "world-subject", "lora": "pvc://x", "ready": True}]}}
    assert adapter_ready(served, "world-subject")


@pytest.mark.slow
@pytest.mark.skipif(not world_model_is_pretrained(),
                    reason="builtin:world here is a short build, not the pretrained model: it draws no world yet")
def test_the_demo_fine_tune_draws_the_subject_more_than_the_base_model(tmp_path: Path) -> None:
    """The demo's settings, trained here with `sdxl-workload train`: identity after > before."""
    from diffusers import StableDiffusionXLPipeline

    from sdxl_workloads import cli
    from sdxl_workloads.builtin.world_quality import measure_world_quality
    from sdxl_workloads.models.references import local_input, resolve_model

    spec: dict[str, Any] = yaml.safe_load(WORLD_EXAMPLE.read_text())["spec"]
    # The trainer outside a cluster takes the builtin names' folders, as the operator's pod does not need to.
    spec["baseModel"] = resolve_model(spec["baseModel"])
    spec["instanceImages"] = str(local_input(spec["instanceImages"]))
    spec["validation"]["numInferenceSteps"] = 1
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(spec))
    termination = tmp_path / "termination-log"
    with contextlib.redirect_stdout(io.StringIO()):
        code = cli.main(["train", "--spec", str(tmp_path / "spec.yaml"), "--output", str(tmp_path / "out"),
                         "--termination-log", str(termination)])
    assert code == 0, termination.read_text() if termination.exists() else code
    assert json.loads(termination.read_text())["status"] == "Succeeded"

    pipe = StableDiffusionXLPipeline.from_pretrained(resolve_model("builtin:world"))
    pipe.set_progress_bar_config(disable=True)
    before = measure_world_quality(pipe, images_per_prompt=2, steps=10)
    pipe.load_lora_weights(str(tmp_path / "out" / "lora"))
    after = measure_world_quality(pipe, images_per_prompt=2, steps=10)
    assert after.identity > before.identity, (before, after)
    # The demo's recipe learns the subject, not only something of it: 0.88 in the demo's report,
    # a median of 0.83 over three seeds (bench/README.md); a recipe change that halves it fails here.
    assert after.identity >= MIN_DEMO_IDENTITY, (before, after)
