"""Fixtures shared by the workload tests (the session-wide tiny model and photos are in tests/conftest.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from sdxl_workloads.server.diffusers_backend import DiffusersBackend
from sdxl_workloads.server.model import ServedModel


@pytest.fixture(scope="module")
def loaded_model(tiny_model_path: Path) -> ServedModel:
    """The real tiny SDXL pipeline behind the server's model object, loaded once per test module."""
    model = ServedModel(DiffusersBackend(str(tiny_model_path)))
    model.load()
    return model
