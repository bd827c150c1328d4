"""Kopf's per-call success lines go to DEBUG; state changes, summaries, warnings stay where they were."""

from __future__ import annotations

import logging

import pytest

from sdxl_operator.handlers.quiet_successes import ACCESS_LOGGER, KOPF_OBJECTS_LOGGER, quiet_kopf_successes


@pytest.fixture
def kopf_objects(caplog: pytest.LogCaptureFixture) -> logging.Logger:
    quiet_kopf_successes()
    quiet_kopf_successes()  # installing twice keeps one filter
    logger = logging.getLogger(KOPF_OBJECTS_LOGGER)
    assert len(logger.filters) == len({type(f) for f in logger.filters})
    return logger


def test_success_lines_are_hidden_at_the_default_level(kopf_objects: logging.Logger,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    kopf_objects.info("Timer 'register_deployment_handlers.<locals>.deployment_status' succeeded.")
    kopf_objects.info("Handler 'child_changed/pods' succeeded.")
    kopf_objects.info("Indexer 'deployment_owners' succeeded.")
    kopf_objects.info("Creation is processed: 1 succeeded; 0 failed.")
    kopf_objects.info("created Service dep-0001")
    kopf_objects.warning("Handler 'child_changed/pods' failed temporarily: boom")
    assert [r.getMessage() for r in caplog.records] == [
        "Creation is processed: 1 succeeded; 0 failed.",
        "created Service dep-0001",
        "Handler 'child_changed/pods' failed temporarily: boom",
    ]


def test_success_lines_show_at_debug(kopf_objects: logging.Logger, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    previous = logging.getLogger().level
    logging.getLogger().setLevel(logging.DEBUG)
    try:
        kopf_objects.info("Timer 'x' succeeded.")
    finally:
        logging.getLogger().setLevel(previous)
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [("DEBUG", "Timer 'x' succeeded.")]


def test_answered_liveness_probes_are_not_logged_failed_ones_are(kopf_objects: logging.Logger,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    access = logging.getLogger(ACCESS_LOGGER)
    access.info('10.0.0.7 [30/Nov/2026:17:41:47 +0000] "GET /healthz HTTP/1.1" 200 150 "-" "kube-probe/1.35"')
    access.info('10.0.0.7 [30/Nov/2026:17:41:48 +0000] "GET /healthz HTTP/1.1" 500 150 "-" "kube-probe/1.35"')
    assert [" 500 " in r.getMessage() for r in caplog.records] == [True]
