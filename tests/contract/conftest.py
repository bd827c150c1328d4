"""Fixtures for contract tests: validate custom resources against our CRDs as the apiserver would.

pytest runs with --import-mode=importlib and the tests folders have no __init__.py, so the helper
module `crd_validation.py` beside this file is loaded by path here and handed out as fixtures:

- `crd_validator(obj, crd_path, old=None) -> list[str]`: apiserver-style errors, [] when valid
  (defaults applied first; CEL rules evaluated; pass `old` to check an update).
- `crd_validation`: the whole module (apply_crd_defaults, load_crd, iter_schema_nodes, ...).
- `finetune_crd_path`, `deployment_crd_path`: the two CRD files.

Tests outside tests/contract can load the module the same way: `load_crd_validation()` below.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest

_MODULE_NAME = "sdxl_tests_crd_validation"
_MODULE_PATH = Path(__file__).resolve().parent / "crd_validation.py"


def load_crd_validation() -> ModuleType:
    """Import tests/contract/crd_validation.py by path (once per process)."""
    if _MODULE_NAME in sys.modules:
        return sys.modules[_MODULE_NAME]
    spec = importlib.util.spec_from_file_location(_MODULE_NAME, _MODULE_PATH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    # Registered before running so its dataclasses can find their module.
    sys.modules[_MODULE_NAME] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def crd_validation() -> ModuleType:
    return load_crd_validation()


@pytest.fixture(scope="session")
def crd_validator(crd_validation: ModuleType) -> Callable[..., list[str]]:
    validate: Callable[..., list[str]] = crd_validation.validate_against_crd
    return validate


@pytest.fixture(scope="session")
def finetune_crd_path(crd_validation: ModuleType) -> Path:
    path: Path = crd_validation.CRD_DIR / "sdxlfinetunes.sdxl.io.yaml"
    return path


@pytest.fixture(scope="session")
def deployment_crd_path(crd_validation: ModuleType) -> Path:
    path: Path = crd_validation.CRD_DIR / "sdxldeployments.sdxl.io.yaml"
    return path

