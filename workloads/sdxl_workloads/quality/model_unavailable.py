"""The one way a quality metric says "I cannot be computed here": its model could not be loaded.

A quality report is an addition to a finished fine-tune, so a metric whose model is not mounted,
not on the hub, or whose library is not installed is left out with this reason rather than failing
the run or standing in with a made-up number.
"""

from __future__ import annotations

from pathlib import Path

# A reason travels in the termination message (4 KiB for everything), so it is kept to one short line.
MAX_REASON_CHARS = 160


class ModelUnavailable(Exception):
    """A metric's model could not be loaded; `reason` says which model and why, in one short line."""

    def __init__(self, reason: str) -> None:
        self.reason = short_reason(reason)
        super().__init__(self.reason)


def short_reason(text: str) -> str:
    """The first line of `text`, cut to MAX_REASON_CHARS (errors from loaders run to pages)."""
    lines = text.strip().splitlines()
    line = lines[0].strip() if lines else ""
    if len(line) > MAX_REASON_CHARS:
        line = line[: MAX_REASON_CHARS - 1] + "…"
    return line


def looks_like_local_path(name_or_path: str) -> bool:
    """Whether `name_or_path` names a folder rather than a hub id ("org/name"): a hub id never starts
    with "/", "." or "~", so such a name that does not exist is a missing mount, not a download."""
    return name_or_path.startswith(("/", ".", "~")) or Path(name_or_path).exists()


def check_local_path(kind: str, name_or_path: str) -> None:
    """Raise ModelUnavailable when a local model folder is absent, before `from_pretrained` would
    mistake it for a hub id and try the network."""
    if looks_like_local_path(name_or_path) and not Path(name_or_path).expanduser().is_dir():
        raise ModelUnavailable(f"{kind} model folder {name_or_path} does not exist (not mounted?)")
