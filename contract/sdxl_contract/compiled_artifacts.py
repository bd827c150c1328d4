"""Where compiled (or prepared) models live in the artifact store, and how a complete one is told apart.

``sdxl-workload compile --store <store> --key <key>`` publishes ``<store>/compiled/<key>/`` (the key
from :mod:`sdxl_contract.compile_key`), every file first and the :data:`COMPLETE_MARKER` file last,
so a reader that sees the marker may trust the rest of the folder. The operator finds a compile
another SDXLDeployment already ran at the same place. Checkpoints use the same marker.
"""

from __future__ import annotations

COMPILED_PREFIX = "compiled"
COMPLETE_MARKER = "COMPLETE"


def compiled_relpath(key: str) -> str:
    """The folder of a compiled model inside its store: ``compiled/<key>``."""
    return f"{COMPILED_PREFIX}/{key}"


def compiled_uri(store: str, key: str) -> str:
    """Where ``sdxl-workload compile --store <store> --key <key>`` publishes: ``<store>/compiled/<key>``."""
    return f"{store.rstrip('/')}/{compiled_relpath(key)}"
