"""Shared fixtures: the embedded model and sample photos, built once per machine and reused.

They live in the ordinary cache ($SDXL_CACHE_DIR, default ~/.cache/sdxl-operator), so repeated
test runs do not rebuild them; point SDXL_CACHE_DIR elsewhere to start from scratch.
Tests that must control the cache themselves (e.g. determinism) pass their own `cache_dir`.
"""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_model_path() -> Path:
    """Folder of `builtin:tiny` (seed 0) in diffusers layout; load with `from_pretrained`."""
    from sdxl_workloads.tiny_model import ensure_tiny_model

    return ensure_tiny_model("tiny", seed=0)


@pytest.fixture(scope="session")
def sample_images_path() -> Path:
    """Folder of `builtin:sample-subject` (seed 0): ~10 PNG photos of one subject."""
    from sdxl_workloads.sample_images import ensure_sample_images

    return ensure_sample_images(seed=0)
