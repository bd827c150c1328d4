"""The status of every unsettled resource is recomputed each status interval, by one task per kind.

Some states no event announces: a pod Pending past the grace period, a claim created meanwhile, a
training pod's progress in its log. So a running fine-tune, and a deployment that is not settled
(pending, compiling, deploying, blocked), are refreshed every ``status interval`` besides on their
children's changes; a finished fine-tune or a Ready deployment is not followed at all.

Why not Kopf's timers: for any kind with a timer, Kopf keeps the latest full body of *every* object
of that kind for as long as the object exists (``live_fresh_body``, for the timers' ``body``),
whether a timer runs for it or not. An SDXLDeployment's body with its managed fields is about 30 KB
of Python objects, so 1,000 deployments and 200 fine-tunes held about 36 MB at rest, for timers
that only the few unsettled ones run; and during a burst each object also had its own timer task.
Here the events of the custom resources (Kopf event handlers, which keep nothing) add and remove
names, a tick reads the object fresh (one GET) and recomputes it, at most ``concurrency`` ticks run at
once, and no finalizer is needed: deleting a resource never waits for the operator.

A tick runs under the resource's status lock (:meth:`StatusRefresher.lock`) so it never writes a
status at the same time as a refresh asked for by a child's change. While Kopf's peering pauses this
replica for a peer (:mod:`peering_pause`), nothing ticks.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import kopf

from sdxl_operator.core.custom_resources import GROUP, VERSION
from sdxl_operator.handlers.operator_context import OperatorContext
from sdxl_operator.handlers.peering_pause import standing_by

Key = tuple[str, str]
logger = logging.getLogger(__name__)

# Ticks running at once, per kind: the rest wait their turn (a burst of 1,000 new deployments is
# worked through steadily instead of all at once).
DEFAULT_CONCURRENCY = 8
# How often the task looks for due ticks, at most (shorter when the interval is shorter: tests).
RESOLUTION_SECONDS = 1.0


async def _never_paused() -> bool:
    return False


class StatusTicker:
    """Runs ``tick(namespace, name)`` every ``interval`` seconds for each resource it follows."""

    def __init__(self, what: str, tick: Callable[[str, str], Awaitable[None]], interval: float, *,
                 concurrency: int = DEFAULT_CONCURRENCY, paused: Callable[[], Awaitable[bool]] | None = None) -> None:
        if interval <= 0:
            raise ValueError(f"the status interval must be positive, got {interval}")
        self.what = what
        self._tick = tick
        self._interval = interval
        self._slots = asyncio.Semaphore(concurrency)
        self._paused_check = paused or _never_paused
        self._due: dict[Key, float] = {}
        self._running: set[Key] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._loop_task: asyncio.Task[None] | None = None

    def pause_with(self, paused: Callable[[], Awaitable[bool]]) -> None:
        """Ask ``paused()`` before ticking (Kopf's peering: whether a peer leads)."""
        self._paused_check = paused

    def follow(self, namespace: str, name: str) -> None:
        """Tick for this resource, first one interval from now (whoever saw it change just read it).

        The first call starts the ticking task. It is called from a Kopf handler, so that task and
        every tick inherit the handler's context: ``kopf.event`` needs Kopf's context variables.
        """
        self._due.setdefault((namespace, name), time.monotonic() + self._interval)
        if self._loop_task is None or self._loop_task.done():
            self._loop_task = asyncio.get_running_loop().create_task(self._run_forever(),
                                                                     name=f"status ticks {self.what}")

    def drop(self, namespace: str, name: str) -> None:
        """Tick no more for this resource (settled, finished or deleted); a tick under way ends first."""
        self._due.pop((namespace, name), None)

    def following(self) -> list[Key]:
        return sorted(self._due)

    async def _run_forever(self) -> None:
        """Start the due ticks every :data:`RESOLUTION_SECONDS`; none while paused."""
        while True:
            await asyncio.sleep(min(RESOLUTION_SECONDS, self._interval / 2))
            now = time.monotonic()
            due = [key for key, at in self._due.items() if at <= now and key not in self._running]
            if not due:
                continue
            if await self._paused():
                for key in due:
                    self._due[key] = now + self._interval
                continue
            for key in due:
                self._start(key)

    async def idle(self) -> None:
        """Until no tick is running (tests)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def close(self) -> None:
        """Stop ticking; cancel the ticks under way."""
        tasks = [*self._tasks, *([self._loop_task] if self._loop_task else [])]
        self._loop_task = None
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _paused(self) -> bool:
        try:
            return await self._paused_check()
        except Exception as exc:  # cannot tell (API server unreachable): tick, as Kopf's timers would
            logger.debug(f"cannot read the peering state: {exc}")
            return False

    def _start(self, key: Key) -> None:
        self._running.add(key)
        task = asyncio.get_running_loop().create_task(self._run(key), name=f"tick {self.what} {key[0]}/{key[1]}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, key: Key) -> None:
        try:
            async with self._slots:
                await self._tick(*key)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the next tick tries again; a tick must never stop the others
            logger.warning(f"status refresh of {self.what} {key[0]}/{key[1]} skipped: {exc}")
        finally:
            self._running.discard(key)
            if key in self._due:
                self._due[key] = time.monotonic() + self._interval


def register_status_ticker(registry: kopf.OperatorRegistry, ticker: StatusTicker, context: OperatorContext,
                           namespaces: Sequence[str] | None, *, plural: str,
                           needs_ticks: Callable[[kopf.Body, str], bool]) -> None:
    """Have ``ticker`` follow the custom resources ``plural`` for which ``needs_ticks(body, namespace)``
    holds (dropped when it stops holding, or they are deleted), and stop it with the operator.
    ``namespaces`` (None: cluster-wide) are where Kopf's peering objects say whether this replica
    stands by."""

    @kopf.on.event(GROUP, VERSION, plural, registry=registry, id=f"follow_for_ticks/{ticker.what}")
    async def follow_for_ticks(body: kopf.Body, type: str | None, namespace: str | None, name: str | None,
                               **_: Any) -> None:
        if not namespace or not name:
            return
        if type != "DELETED" and not body["metadata"].get("deletionTimestamp") and needs_ticks(body, namespace):
            ticker.follow(namespace, name)
        else:
            ticker.drop(namespace, name)

    @kopf.on.startup(registry=registry, id=f"pause_status_ticks/{ticker.what}")
    async def pause_status_ticks(settings: kopf.OperatorSettings, **_: Any) -> None:
        async def paused() -> bool:
            return await standing_by(context.api, settings, list(namespaces or ()))

        ticker.pause_with(paused)

    @kopf.on.cleanup(registry=registry, id=f"stop_status_ticks/{ticker.what}")
    async def stop_status_ticks(**_: Any) -> None:
        await ticker.close()
