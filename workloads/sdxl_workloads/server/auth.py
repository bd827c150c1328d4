"""Optional API key: `Authorization: Bearer <key>` or `X-API-Key: <key>`."""

from __future__ import annotations

import hmac
from pathlib import Path

from sdxl_workloads.protocol import WorkloadError


def read_api_key(path: str | Path) -> str:
    """The key from a file (a mounted Secret): surrounding whitespace and the newline stripped."""
    try:
        key = Path(path).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as err:
        raise WorkloadError("InvalidInput", f"--api-key-file {path}: cannot read it ({err})") from err
    if not key:
        raise WorkloadError("InvalidInput", f"--api-key-file {path}: the file is empty; put the API key in it")
    return key


def presented_key(authorization: str | None, x_api_key: str | None) -> str | None:
    if x_api_key:
        return x_api_key.strip()
    if authorization:
        scheme, _, value = authorization.strip().partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    return None


def key_matches(expected: str, presented: str | None) -> bool:
    """Constant-time comparison, so response timing does not reveal how much of a guess matched."""
    if presented is None:
        return False
    return hmac.compare_digest(expected.encode("utf-8"), presented.encode("utf-8"))
