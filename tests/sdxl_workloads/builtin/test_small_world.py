"""The small world: deterministic pictures and captions, read back exactly from pixels, and a
subject whose look the pretraining distribution never contains."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sdxl_workloads.builtin.small_world import (
    HAIR_COLOURS,
    PATTERNS,
    POSES,
    SETTINGS,
    SHIRT_COLOURS,
    SUBJECT_HAIR,
    SUBJECT_PATTERN,
    SUBJECT_SHIRT,
    WORLD_RESOLUTION,
    caption,
    draw_scene,
    is_subject_look,
    read_scene,
    sample_scene,
    scene_for_seed,
)
from sdxl_workloads.builtin.world_pretraining import pixels_of
from sdxl_workloads.builtin.world_subject import (
    PHOTO_COUNT,
    ensure_world_subject_images,
    subject_scenes,
    write_world_subject_images,
)
from sdxl_workloads.models.references import local_input

SEEDS = range(600)


def test_same_seed_same_scene_same_pixels() -> None:
    for seed in (0, 1, 17, 599):
        first, second = scene_for_seed(seed), scene_for_seed(seed)
        assert first == second
        assert draw_scene(first).tobytes() == draw_scene(second).tobytes()
    assert draw_scene(scene_for_seed(0)).tobytes() != draw_scene(scene_for_seed(1)).tobytes()
    assert caption(scene_for_seed(3), np.random.default_rng(5)) == caption(scene_for_seed(3), np.random.default_rng(5))


def test_pictures_are_crisp_at_the_model_resolution() -> None:
    image = draw_scene(scene_for_seed(0))
    assert image.size == (WORLD_RESOLUTION, WORLD_RESOLUTION) and image.mode == "RGB"
    # Flat colours: a picture is a few dozen colours, not a blurred or noisy gradient.
    assert len(image.getcolors(maxcolors=4096) or []) < 40


def test_read_scene_is_exact_on_generated_scenes() -> None:
    seen: dict[str, Counter[str]] = {name: Counter() for name in ("hair", "shirt", "pattern", "pose", "setting")}
    for seed in SEEDS:
        scene = scene_for_seed(seed)
        read = read_scene(draw_scene(scene))
        assert read.attributes() == scene.attributes(), f"seed {seed}: drew {scene}, read {read}"
        assert (read.dx, read.dy) == (scene.dx, scene.dy), f"seed {seed}: figure position"
        for name, value in scene.attributes().items():
            seen[name][value] += 1
    # ... and the seeds cover every value of every attribute.
    assert set(seen["hair"]) == set(HAIR_COLOURS)
    assert set(seen["shirt"]) == set(SHIRT_COLOURS)
    assert set(seen["pattern"]) == set(PATTERNS)
    assert set(seen["pose"]) == set(POSES)
    assert set(seen["setting"]) == set(SETTINGS)


def test_read_scene_takes_a_pipeline_output_and_a_larger_picture() -> None:
    scene = scene_for_seed(8)
    as_floats = np.asarray(draw_scene(scene), dtype=np.float32) / 255.0  # output_type="np"
    assert read_scene(as_floats).attributes() == scene.attributes()
    assert read_scene(draw_scene(scene, size=256)).attributes() == scene.attributes()


def test_read_scene_tolerates_blur_and_noise() -> None:
    """Model outputs are soft: reading takes the nearest palette colour over a region."""
    from PIL import ImageFilter

    rng = np.random.default_rng(0)
    right = 0
    for seed in range(100):
        scene = scene_for_seed(seed)
        soft = draw_scene(scene).filter(ImageFilter.GaussianBlur(0.8))
        noisy = np.clip(np.asarray(soft, np.float32) + rng.normal(0, 12, (64, 64, 3)), 0, 255).astype(np.uint8)
        read = read_scene(noisy)
        right += (read.hair, read.shirt, read.setting, read.pose) == (scene.hair, scene.shirt, scene.setting, scene.pose)
    assert right >= 95


def test_captions_name_the_attributes_of_their_scene() -> None:
    scene = scene_for_seed(4)
    full = caption(scene)
    assert full.startswith("a photo of a person")
    for word in (f"{scene.hair} hair", f"{scene.shirt} {scene.pattern} shirt", scene.pose):
        assert word in full
    # Sampled captions are often shorter, so each word is also seen alone.
    rng = np.random.default_rng(0)
    lengths = {len(caption(scene, rng)) for _ in range(300)}
    assert min(lengths) < len(full) and max(lengths) == len(full)


def test_the_subject_look_never_occurs_in_pretraining_samples() -> None:
    rng = np.random.default_rng(123)
    scenes = [sample_scene(rng) for _ in range(20000)]
    assert not any(is_subject_look(scene) for scene in scenes)
    assert not any(s.hair == SUBJECT_HAIR and s.shirt == SUBJECT_SHIRT for s in scenes)
    # Each of its colours does occur, only never together.
    assert any(s.hair == SUBJECT_HAIR for s in scenes) and any(s.shirt == SUBJECT_SHIRT for s in scenes)
    # The pretraining draws its pictures through the same sampler.
    assert pixels_of(scenes[:2]).shape == (2, 3, WORLD_RESOLUTION, WORLD_RESOLUTION)


def test_subject_photos_show_the_subject_in_every_setting(tmp_path: Path) -> None:
    written = write_world_subject_images(tmp_path / "a")
    again = write_world_subject_images(tmp_path / "b")
    assert len(written) == PHOTO_COUNT
    assert [p.read_bytes() for p in written] == [p.read_bytes() for p in again]
    settings = set()
    for path, scene in zip(written, subject_scenes(), strict=True):
        read = read_scene(Image.open(path))
        assert (read.hair, read.shirt, read.pattern) == (SUBJECT_HAIR, SUBJECT_SHIRT, SUBJECT_PATTERN), path.name
        assert read.setting == scene.setting
        settings.add(read.setting)
    assert settings == set(SETTINGS)


def test_builtin_world_subject_resolves_to_the_photos(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SDXL_CACHE_DIR", str(tmp_path))
    folder = local_input("builtin:world-subject")
    assert folder == ensure_world_subject_images()
    assert sorted(p.name for p in folder.iterdir()) == [f"subject_{i:02d}.png" for i in range(PHOTO_COUNT)]
