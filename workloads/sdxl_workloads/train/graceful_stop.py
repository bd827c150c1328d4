"""SIGTERM as a request to stop at the next step boundary, not as death.

Before a pod is killed (a spot interruption, a node drain, an eviction) the kubelet sends SIGTERM
and waits `terminationGracePeriodSeconds` (30 s by default) before SIGKILL. One SDXL training step
takes about a second on an A10G and a LoRA checkpoint a few more, so the trainer finishes the step
it is in, writes a checkpoint and exits: the Job's next pod (`--resume latest`) continues from
that step instead of from the last periodic checkpoint, up to `checkpointEvery` steps earlier.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

# The conventional exit status of a process stopped by SIGTERM (128 + 15). It is not the
# permanent-failure code, so the Job retries the pod, which resumes from the checkpoint.
EXIT_CODE = 128 + signal.SIGTERM


class StopRequest:
    """Set by the handler; read by the training loop after each optimizer step."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self.signal_name: str | None = None

    def set(self, signal_name: str = "SIGTERM") -> None:
        self.signal_name = signal_name
        self._event.set()

    @property
    def requested(self) -> bool:
        return self._event.is_set()


class TrainingStopped(Exception):
    """The loop stopped early on request; `checkpoint` is the URI written for it, if any."""

    def __init__(self, step: int, checkpoint: str | None = None) -> None:
        super().__init__(f"stopped at step {step}")
        self.step = step
        self.checkpoint = checkpoint


@contextmanager
def stop_on_sigterm() -> Iterator[StopRequest]:
    """Within the block SIGTERM sets the returned request instead of ending the process.

    Outside the main thread (where Python cannot install handlers) the request is simply never set.
    """
    request = StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield request
        return

    def handle(signum: int, _frame: Any) -> None:
        request.set(signal.Signals(signum).name)

    previous = signal.signal(signal.SIGTERM, handle)
    try:
        yield request
    finally:
        signal.signal(signal.SIGTERM, previous)
