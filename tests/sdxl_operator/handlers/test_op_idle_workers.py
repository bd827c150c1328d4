"""Kopf's per-object workers as the operator configures them: idle ones leave soon, none are refused."""

from __future__ import annotations

import kopf

from sdxl_operator.handlers.idle_workers import WORKER_IDLE_SECONDS
from sdxl_operator.handlers.operator_registry import configure_kopf


def test_idle_workers_exit_sooner_than_kopfs_default() -> None:
    settings = kopf.OperatorSettings()
    default_idle = settings.queueing.idle_timeout

    configure_kopf(settings)

    assert settings.queueing.idle_timeout == WORKER_IDLE_SECONDS < default_idle


def test_workers_stay_unlimited() -> None:
    # Kopf sleeps inside a worker while a handler waits for its retry: a limit smaller than the number
    # of waiting objects of one kind would starve every other object of that kind.
    settings = kopf.OperatorSettings()

    configure_kopf(settings)

    assert settings.queueing.worker_limit is None
