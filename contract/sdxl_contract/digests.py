"""The sha256 digest format both sides write and compare: 64 hexadecimal characters, lowercase.

A digest a user writes may be uppercase; both sides normalise it with :func:`normalise_sha256`
before comparing it or putting it into a compile key, so one file always has one digest.
"""

from __future__ import annotations

import re

SHA256_HEX = re.compile(r"[0-9a-fA-F]{64}")


def is_sha256(value: object) -> bool:
    """True for 64 hexadecimal characters, in either case."""
    return isinstance(value, str) and SHA256_HEX.fullmatch(value) is not None


def normalise_sha256(value: str) -> str:
    """The canonical (lowercase) form of a sha256 hex digest."""
    return value.lower()
