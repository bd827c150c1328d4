"""The runtime id of a compile run by hand names the installed library versions."""

from __future__ import annotations

from importlib import metadata

import pytest

from sdxl_workloads.compile.runtime_id import default_runtime_id

# These modules run in the Neuron image too (make test-compat).
pytestmark = pytest.mark.compat


def test_default_runtime_id_names_the_installed_versions() -> None:
    cpu = default_runtime_id("cpu")
    assert cpu == f"diffusers={metadata.version('diffusers')},torch={metadata.version('torch')}"
    assert default_runtime_id("nvidia") == cpu  # optimum-neuron plays no part in a prepared pipeline
    neuron = default_runtime_id("neuron")
    assert neuron.startswith(cpu + ",optimum-neuron=")
