"""Messages written into a status, kept short enough to read in ``kubectl describe``."""

from __future__ import annotations

MAX_MESSAGE = 2000


def tail_of(text: str) -> str:
    """``text`` with its start cut off when too long: a workload's last error is at the end."""
    text = text.strip()
    return text if len(text) <= MAX_MESSAGE else "..." + text[-(MAX_MESSAGE - 3):]


def head_of(text: str) -> str:
    """``text`` with its end cut off when too long: a list of spec errors starts with the first one."""
    text = text.strip()
    return text if len(text) <= MAX_MESSAGE else text[:MAX_MESSAGE - 3] + "..."
