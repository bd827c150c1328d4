"""The keys of a fine-tune's quality report: ``metrics["quality"]`` in the trainer's result, copied by
the operator to ``status.quality`` (the CRD's schema of that block names the same keys).

Numbers are rounded to three decimals by the trainer; a metric that could not be computed is absent
and ``skipped[<key>]`` says why (one short line).
"""

from __future__ import annotations

# The result's metrics key that holds the report.
QUALITY = "quality"

# builtin:world: shares of generated images, judged from pixels.
IDENTITY = "identity"  # subject-prompt images showing the subject's look
PROMPT_FIDELITY = "promptFidelity"  # the same images showing the setting their prompt asked for
CLASS_DRIFT = "classDrift"  # class-prompt images showing the subject's look, after minus before

# Any other base model: similarities of the final validation images.
CLIP_IMAGE = "clipImage"  # CLIP-I, generated vs instance photos
CLIP_TEXT = "clipText"  # CLIP-T, generated image vs its prompt
DINO = "dino"  # DINO, generated vs instance photos
FACE = "face"  # 1 - dlib face distance, generated vs instance faces

WORLD_METRICS: tuple[str, ...] = (IDENTITY, PROMPT_FIDELITY, CLASS_DRIFT)
SIMILARITY_METRICS: tuple[str, ...] = (CLIP_IMAGE, CLIP_TEXT, DINO, FACE)
METRICS: tuple[str, ...] = WORLD_METRICS + SIMILARITY_METRICS

# Counts.
IMAGES = "images"  # generated images scored
FACE_DETECTED = "faceDetected"  # validation images with a detectable face
COUNTS: tuple[str, ...] = (IMAGES, FACE_DETECTED)

SKIPPED = "skipped"  # metric key -> why it is absent
