"""The three fine-tune measures, on drawn pictures whose answers are known."""

from __future__ import annotations

from dataclasses import replace

from sdxl_workloads.builtin.small_world import SETTINGS, draw_scene, scene_for_seed
from sdxl_workloads.builtin.world_quality import (
    class_drift,
    identity,
    prompt_fidelity,
    subject_look_share,
    subject_prompts,
)
from sdxl_workloads.builtin.world_subject import subject_scenes

SUBJECT = subject_scenes()[0]


def test_identity_counts_the_subject_look_in_every_setting() -> None:
    subject_everywhere = {s: [draw_scene(replace(SUBJECT, setting=s))] * 2 for s in SETTINGS}
    assert identity(subject_everywhere) == 1.0
    others = {s: [draw_scene(replace(scene_for_seed(i), setting=s)) for i in range(2)] for s in SETTINGS}
    assert identity(others) == 0.0
    # Half hair alone is not the subject: both colours must show.
    green_hair_only = replace(SUBJECT, shirt="blue")
    assert subject_look_share([draw_scene(green_hair_only), draw_scene(SUBJECT)]) == 0.5


def test_prompt_fidelity_is_the_share_showing_the_asked_setting() -> None:
    right = {s: [draw_scene(replace(SUBJECT, setting=s))] for s in SETTINGS}
    assert prompt_fidelity(right) == 1.0
    # Everything drawn on the beach: only the beach prompt is honoured.
    beach_only = {s: [draw_scene(replace(SUBJECT, setting="beach"))] for s in SETTINGS}
    assert prompt_fidelity(beach_only) == 0.25


def test_class_drift_is_after_minus_before() -> None:
    person = draw_scene(scene_for_seed(2))
    subject = draw_scene(SUBJECT)
    assert class_drift([person] * 4, [subject, subject, person, person]) == 0.5
    assert class_drift([person] * 4, [person] * 4) == 0.0
    assert class_drift([subject, person], [person, person]) == -0.5


def test_subject_prompts_ask_for_each_setting() -> None:
    assert subject_prompts() == {
        "beach": "a photo of sks person on the beach",
        "forest": "a photo of sks person in a forest",
        "city": "a photo of sks person in a city",
        "moon": "a photo of sks person on the moon",
    }
