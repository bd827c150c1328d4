"""The workload's writable cache: S3 downloads, the embedded model and photos."""

from __future__ import annotations

import os
from pathlib import Path

from sdxl_contract.workload_protocol import CACHE_DIR_ENV

DEFAULT_CACHE_DIR = Path("~/.cache/sdxl-operator")


def cache_root(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """The cache folder: the argument, else $SDXL_CACHE_DIR, else ~/.cache/sdxl-operator."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    env = os.environ.get(CACHE_DIR_ENV)
    return Path(env).expanduser() if env else DEFAULT_CACHE_DIR.expanduser()
