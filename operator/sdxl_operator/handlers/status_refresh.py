"""Status refreshes of custom resources, requested by the events of their children.

A child's change (a Job's condition, a pod's phase, a Deployment's ready replicas) asks for its
owner's status to be recomputed now instead of at the next timer tick. Requests are coalesced: while
a refresh of a resource waits to start, more requests for it add nothing (the refresh reads the
state as it is when it starts), and a request that arrives while one runs makes one more run
afterwards. Refreshes of one resource never overlap, and the status timers take the same per-resource
lock (:meth:`StatusRefresher.lock`), so a timer and an event never write one status at once.

A short delay before each refresh lets a burst (a pod terminating, then its Job completing) become
one refresh.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

# Seconds a requested refresh waits for more changes of the same burst before it reads the state.
COALESCE_SECONDS = 0.1
# A status timer's tick this soon after a refresh is skipped: the body Kopf hands the timer may not
# show the status that refresh wrote yet, and the refresh was fresher anyway.
FRESH_SECONDS = 2.0

Key = tuple[str, str]
logger = logging.getLogger(__name__)


class StatusRefresher:
    """Runs ``refresh(namespace, name)`` on request, coalesced and serialized per resource."""

    def __init__(self, what: str, refresh: Callable[[str, str], Awaitable[None]],
                 coalesce_seconds: float = COALESCE_SECONDS) -> None:
        self.what = what
        self._refresh = refresh
        self._coalesce_seconds = coalesce_seconds
        self._locks: dict[Key, asyncio.Lock] = {}
        self._waiting: set[Key] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._refreshed_at: dict[Key, float] = {}

    def lock(self, namespace: str, name: str) -> asyncio.Lock:
        """The lock every writer of this resource's status holds while it computes and writes it."""
        return self._locks.setdefault((namespace, name), asyncio.Lock())

    def refreshed_within(self, namespace: str, name: str, seconds: float) -> bool:
        """Whether a requested refresh of the resource finished less than ``seconds`` ago."""
        at = self._refreshed_at.get((namespace, name))
        return at is not None and time.monotonic() - at < seconds

    def request(self, namespace: str, name: str) -> None:
        """Refresh the resource's status soon (at once if no refresh of it is waiting already)."""
        key = (namespace, name)
        if key in self._waiting:
            return
        self._waiting.add(key)
        task = asyncio.get_running_loop().create_task(self._run(key), name=f"refresh {self.what} {namespace}/{name}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, key: Key) -> None:
        started = False
        try:
            await asyncio.sleep(self._coalesce_seconds)
            async with self.lock(*key):
                # From here on a new request starts another run: this one may have read the state already.
                self._waiting.discard(key)
                started = True
                await self._refresh(*key)
                self._refreshed_at[key] = time.monotonic()
        except asyncio.CancelledError:
            raise
        except Exception:  # a refresh must never take the watch down; the next change or tick retries
            logger.exception(f"refreshing the status of {self.what} {key[0]}/{key[1]} failed")
        finally:
            if not started:
                self._waiting.discard(key)

    def forget(self, namespace: str, name: str) -> None:
        """Drop what is kept about a deleted resource (unless a refresh of it is under way)."""
        key = (namespace, name)
        lock = self._locks.get(key)
        if key not in self._waiting and (lock is None or not lock.locked()):
            self._locks.pop(key, None)
            self._refreshed_at.pop(key, None)

    async def idle(self) -> None:
        """Until no refresh is waiting or running (tests, shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def close(self) -> None:
        """Cancel every waiting or running refresh."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*list(self._tasks), return_exceptions=True)
