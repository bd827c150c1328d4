"""Fixtures for contract tests: validate custom resources against our CRDs as the API server would.

The validator is the product's own (:mod:`sdxl_contract.schema`, which the operator and the workloads
use too):

- `crd_validator(obj, crd_path, old=None) -> list[str]`: API-server-style errors, [] when valid
  (defaults applied first; CEL rules evaluated; pass `old` to check an update).
- `crd_validation`: the whole module (apply_crd_defaults, load_crd, iter_schema_nodes, ...).
- `finetune_crd_path`, `deployment_crd_path`: the two CRD files.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest

from sdxl_contract import schema


@pytest.fixture(scope="session")
def crd_validation() -> ModuleType:
    return schema


@pytest.fixture(scope="session")
def crd_validator() -> Callable[..., list[str]]:
    return schema.validate_against_crd


@pytest.fixture(scope="session")
def finetune_crd_path() -> Path:
    return schema.crd_path_for_kind("SDXLFineTune")


@pytest.fixture(scope="session")
def deployment_crd_path() -> Path:
    return schema.crd_path_for_kind("SDXLDeployment")
