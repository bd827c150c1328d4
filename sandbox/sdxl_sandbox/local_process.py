"""One container running as a local process: started, its output captured as the pod log, stopped.

The process gets its own process group (so stopping it stops whatever it started) and, on Linux, is
sent SIGTERM should the sandbox itself die, so no workload outlives the sandbox. Stopping sends
SIGTERM, waits the grace period as kubelet does, then SIGKILL.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path

from sdxl_sandbox.container_launch import LaunchPlan

PR_SET_PDEATHSIG = 1
LOG_READ_CHUNK = 65536


def die_with_parent() -> None:
    """Have the kernel SIGTERM this process when its parent dies (Linux); runs between fork and exec."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(Exception):
            ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


class LocalProcess:
    """A started container process; ``exit_code`` is set once it ended."""

    def __init__(self, process: asyncio.subprocess.Process, plan: LaunchPlan, log_file: Path,
                 on_output: Callable[[str], None]) -> None:
        self._process = process
        self.plan = plan
        self.log_file = log_file
        self._on_output = on_output
        self.stopped_by_us = False
        self._reader = asyncio.create_task(self._read_output())

    @property
    def pid(self) -> int:
        return self._process.pid

    @classmethod
    async def start(cls, plan: LaunchPlan, *, cwd: Path, log_file: Path,
                    on_output: Callable[[str], None]) -> LocalProcess:
        cwd.mkdir(parents=True, exist_ok=True)
        process = await asyncio.create_subprocess_exec(
            *plan.argv, env=plan.env, cwd=str(cwd), stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
            start_new_session=True, preexec_fn=die_with_parent,
        )
        return cls(process, plan, log_file, on_output)

    async def _read_output(self) -> None:
        assert self._process.stdout is not None  # piped above
        with self.log_file.open("a", encoding="utf-8") as log:
            while True:
                chunk = await self._process.stdout.read(LOG_READ_CHUNK)
                if not chunk:
                    return
                text = chunk.decode("utf-8", errors="replace")
                log.write(text)
                log.flush()
                self._on_output(text)

    @property
    def exit_code(self) -> int | None:
        """The exit status once ended and its output read (128 + N when killed by signal N), else None."""
        code = self._process.returncode
        if code is None or not self._reader.done():
            return None
        return 128 - code if code < 0 else code

    @property
    def killed_by_signal(self) -> int | None:
        code = self._process.returncode
        return -code if code is not None and code < 0 else None

    async def wait(self) -> int:
        await self._process.wait()
        await self._reader
        code = self.exit_code
        assert code is not None
        return code

    def _signal_group(self, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self._process.pid, signum)

    async def stop(self, grace_seconds: float = 10.0) -> None:
        """SIGTERM, then SIGKILL after ``grace_seconds``; returns once the process is gone."""
        self.stopped_by_us = True
        if self._process.returncode is None:
            self._signal_group(signal.SIGTERM)
            try:
                await asyncio.wait_for(self._process.wait(), grace_seconds)
            except asyncio.TimeoutError:
                self._signal_group(signal.SIGKILL)
                await self._process.wait()
        # Children of the workload (if any) go with their group.
        self._signal_group(signal.SIGKILL)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._reader, 5)
