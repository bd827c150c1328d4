"""The runtime id of a compile run alone: the library versions a compiled model belongs to.

The operator passes the image reference as ``--runtime-id`` (see ``sdxl_contract.compile_key``); a
compile run by hand names the installed packages instead. Pure: no torch, no I/O beyond reading
installed package metadata.
"""

from __future__ import annotations

from importlib import metadata

from sdxl_contract import accelerators


def _version(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def default_runtime_id(accelerator: str) -> str:
    """`diffusers=<v>,torch=<v>[,optimum-neuron=<v>]` from the installed packages.

    optimum-neuron counts only for an accelerator that compiles (Neuron): it plays no part in
    preparing a GPU/CPU pipeline.
    """
    parts = [f"diffusers={_version('diffusers') or 'none'}", f"torch={_version('torch') or 'none'}"]
    if accelerators.profile_of(accelerator).compiles_for_fixed_shapes:
        parts.append(f"optimum-neuron={_version('optimum-neuron') or 'none'}")
    return ",".join(parts)
