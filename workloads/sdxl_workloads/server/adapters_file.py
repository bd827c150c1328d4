"""The adapters a multi-adapter server serves, from a JSON file it re-reads while running.

The file is `{"adapters": {"<fine-tune name>": "<LoRA URI>", ...}}`. In a pod it is a ConfigMap
mounted as a volume: the kubelet replaces the file when the ConfigMap changes (within its sync
period, about a minute), and the server picks the new set up at its next read, so fine-tunes join
and leave without a restart. A file that cannot be read or parsed while serving keeps the last
good set (logged); at start it is an InvalidInput failure naming the file.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from sdxl_workloads.protocol import WorkloadError

log = logging.getLogger(__name__)

DEFAULT_REFRESH_SECONDS = 10.0


def parse_adapters(text: str, source: str) -> dict[str, str]:
    try:
        document: Any = json.loads(text)
    except json.JSONDecodeError as err:
        raise WorkloadError("InvalidInput", f"{source}: not JSON: {err}") from err
    adapters = document.get("adapters") if isinstance(document, dict) else None
    if not isinstance(adapters, dict):
        raise WorkloadError("InvalidInput",
                            f'{source}: must be a JSON object {{"adapters": {{"<name>": "<LoRA URI>", ...}}}}')
    for name, uri in adapters.items():
        if not isinstance(uri, str) or not uri or not name:
            raise WorkloadError("InvalidInput", f"{source}: adapter {name!r} needs a non-empty LoRA URI string")
    return dict(adapters)


def read_adapters(path: str | Path) -> dict[str, str]:
    try:
        text = Path(path).read_text()
    except OSError as err:
        raise WorkloadError("InvalidInput", f"--adapters {path}: cannot read it: {err}") from err
    return parse_adapters(text, f"--adapters {path}")


async def follow_adapters(path: str | Path, apply: Callable[[Mapping[str, str]], None], current: Mapping[str, str],
                          every: float = DEFAULT_REFRESH_SECONDS) -> None:
    """Re-read `path` every `every` seconds and `apply` each new set; runs until cancelled."""
    last = dict(current)
    while True:
        await asyncio.sleep(every)
        try:
            adapters = await asyncio.to_thread(read_adapters, path)
        except WorkloadError as err:
            log.error("%s; still serving the previous %d adapter(s)", err, len(last))
            continue
        if adapters != last:
            apply(adapters)
            last = adapters
