"""Kopf's per-object success lines ("Handler '...' succeeded.", "Timer/Indexer '...' succeeded.") at DEBUG.

Kopf logs them at INFO for every handler call: a line per status tick and per watched child's
change, about a hundred a second for a thousand resources while nothing changes. What a person
needs at the default level stays there: the state changes the handlers log themselves, Kopf's
"Creation is processed" summary of a user's action, and every warning and error. ``--verbose`` (or
``--debug``) shows the success lines again.

The same goes for the access line of every answered liveness probe (Kopf serves ``--liveness`` with
aiohttp, which logs each request at INFO: two lines a minute from the kubelet); a probe answered
with an error stays visible.
"""

from __future__ import annotations

import logging
import re

KOPF_OBJECTS_LOGGER = "kopf.objects"
ACCESS_LOGGER = "aiohttp.access"
_SUCCESS = re.compile(r"^(Handler|Timer|Daemon|Indexer) '.+' succeeded\.$")
_PROBE_ANSWERED = re.compile(r'"GET /healthz[ ?][^"]*" 2\d\d ')


class QuietSuccesses(logging.Filter):
    """Turns Kopf's INFO success line of a handler call (or of an answered probe) into a DEBUG record."""

    def __init__(self, pattern: re.Pattern[str] = _SUCCESS) -> None:
        super().__init__()
        self.pattern = pattern

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno != logging.INFO or not self.pattern.search(record.getMessage()):
            return True
        record.levelno, record.levelname = logging.DEBUG, logging.getLevelName(logging.DEBUG)
        return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)


def quiet_kopf_successes() -> None:
    """Install :class:`QuietSuccesses` on Kopf's per-object logger and the probe's access log (once
    per process)."""
    for name, pattern in ((KOPF_OBJECTS_LOGGER, _SUCCESS), (ACCESS_LOGGER, _PROBE_ANSWERED)):
        logger = logging.getLogger(name)
        if not any(isinstance(existing, QuietSuccesses) for existing in logger.filters):
            logger.addFilter(QuietSuccesses(pattern))
