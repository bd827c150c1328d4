"""Status refreshes of custom resources, requested by the events of their children.

A child's change (a Job's condition, a pod's phase, a Deployment's ready replicas) asks for its
owner's status to be recomputed now instead of at its next tick (:mod:`status_ticker`). Requests are coalesced: while
a refresh of a resource waits to start, more requests for it add nothing (the refresh reads the
state as it is when it starts), and a request that arrives while one runs makes one more run
afterwards. Refreshes of one resource never overlap, and the ticks take the same per-resource lock
(:meth:`StatusRefresher.lock`), so a tick and an event never write one status at once.

A short delay before each refresh lets a burst (a pod terminating, then its Job completing) become
one refresh.

A refresh that fails (the API server refused or could not be reached) is tried again after 1 s, 2 s,
4 s ... (capped at ``max_retry_seconds``, the status interval) a few times (:data:`RETRIES`): a Ready
deployment has no ticks, so without a retry its status would stay stale until its next change.
A retry is a request like any other (coalesced, serialized); a change that arrives while it waits
joins it, and a resource deleted meanwhile (:meth:`StatusRefresher.forget`) is not tried again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

# Seconds a requested refresh waits for more changes of the same burst before it reads the state.
COALESCE_SECONDS = 0.1
# Retries of a failed refresh, and the first retry's delay (doubled for each next one).
RETRIES = 4
FIRST_RETRY_SECONDS = 1.0

Key = tuple[str, str]
logger = logging.getLogger(__name__)


class StatusRefresher:
    """Runs ``refresh(namespace, name)`` on request, coalesced and serialized per resource."""

    def __init__(self, what: str, refresh: Callable[[str, str], Awaitable[None]],
                 coalesce_seconds: float = COALESCE_SECONDS, *, retries: int = RETRIES,
                 first_retry_seconds: float = FIRST_RETRY_SECONDS, max_retry_seconds: float = 10.0) -> None:
        self.what = what
        self._refresh = refresh
        self._coalesce_seconds = coalesce_seconds
        self._retries = retries
        self._first_retry_seconds = first_retry_seconds
        self._max_retry_seconds = max_retry_seconds
        # Retries waiting for their delay (cancelled when the resource is deleted), and resources deleted
        # while a refresh of them ran (that refresh is not retried).
        self._retrying: dict[Key, asyncio.Task[None]] = {}
        self._running: set[Key] = set()
        self._deleted: set[Key] = set()
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
        self._deleted.discard(key)  # the same name again: a new resource
        if key in self._waiting:
            return
        self._start(key, self._coalesce_seconds, attempt=0)

    def _start(self, key: Key, delay: float, attempt: int) -> asyncio.Task[None]:
        self._waiting.add(key)
        task = asyncio.get_running_loop().create_task(self._run(key, delay, attempt),
                                                      name=f"refresh {self.what} {key[0]}/{key[1]}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _run(self, key: Key, delay: float, attempt: int) -> None:
        started = False
        try:
            await asyncio.sleep(delay)
            async with self.lock(*key):
                # From here on a new request starts another run: this one may have read the state already.
                self._waiting.discard(key)
                self._retrying.pop(key, None)
                started = True
                self._running.add(key)
                try:
                    await self._refresh(*key)
                finally:
                    self._running.discard(key)
                self._refreshed_at[key] = time.monotonic()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a refresh must never take the watch down
            self._retry(key, attempt + 1, exc)
        finally:
            if not started:
                self._waiting.discard(key)
            if key in self._deleted and key not in self._waiting:
                self._deleted.discard(key)
                self.forget(*key)

    def _retry(self, key: Key, attempt: int, exc: Exception) -> None:
        what = f"{self.what} {key[0]}/{key[1]}"
        if key in self._deleted:
            return
        if attempt > self._retries:
            logger.error(f"refreshing the status of {what} failed {attempt} times; the next change of it "
                         f"retries", exc_info=exc)
            return
        if key in self._waiting:
            return  # a change arrived meanwhile: its refresh is the retry
        delay = min(self._first_retry_seconds * 2 ** (attempt - 1), self._max_retry_seconds)
        logger.warning(f"refreshing the status of {what} failed ({exc}); retry {attempt} of {self._retries} "
                       f"in {delay:g}s")
        self._retrying[key] = self._start(key, delay, attempt)

    def forget(self, namespace: str, name: str) -> None:
        """Drop what is kept about a deleted resource; a retry waiting for its delay is cancelled, and a
        refresh under way is not retried (what is kept goes when it ends)."""
        key = (namespace, name)
        retry = self._retrying.pop(key, None)
        if retry is not None:
            retry.cancel()
            self._waiting.discard(key)
        lock = self._locks.get(key)
        if key not in self._waiting and (lock is None or not lock.locked()):
            self._locks.pop(key, None)
            self._refreshed_at.pop(key, None)
        elif key in self._waiting or key in self._running:  # that refresh forgets it when it ends
            self._deleted.add(key)

    async def idle(self) -> None:
        """Until no refresh is waiting or running (tests, shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def close(self) -> None:
        """Cancel every waiting or running refresh."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*list(self._tasks), return_exceptions=True)
