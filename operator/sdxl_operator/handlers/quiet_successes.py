"""Kopf's per-object success lines ("Handler '...' succeeded.", "Timer/Indexer '...' succeeded.") at DEBUG.

Kopf logs them at INFO for every handler call: a line per status tick and per watched child's
change, about a hundred a second for a thousand resources while nothing changes. What a person
needs at the default level stays there: the state changes the handlers log themselves, Kopf's
"Creation is processed" summary of a user's action, and every warning and error. ``--verbose`` (or
``--debug``) shows the success lines again.
"""

from __future__ import annotations

import logging
import re

KOPF_OBJECTS_LOGGER = "kopf.objects"
_SUCCESS = re.compile(r"^(Handler|Timer|Daemon|Indexer) '.+' succeeded\.$")


class QuietSuccesses(logging.Filter):
    """Turns Kopf's INFO success line of a handler call into a DEBUG record."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno != logging.INFO or not _SUCCESS.match(record.getMessage()):
            return True
        record.levelno, record.levelname = logging.DEBUG, logging.getLevelName(logging.DEBUG)
        return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)


def quiet_kopf_successes() -> None:
    """Install :class:`QuietSuccesses` on Kopf's per-object logger (once per process)."""
    logger = logging.getLogger(KOPF_OBJECTS_LOGGER)
    if not any(isinstance(existing, QuietSuccesses) for existing in logger.filters):
        logger.addFilter(QuietSuccesses())
