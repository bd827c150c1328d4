"""Assembles the operator: Kopf settings, login, the API client and every controller's handlers.

``build_registry(settings)`` returns a Kopf registry that ``kopf.run``/``kopf.operator`` can run; the
CLI, the sandbox and the tests all start the operator through it, so they run the same handlers.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable, Sequence
from typing import Any

import kopf

from sdxl_operator.core.settings import OperatorSettings
from sdxl_operator.handlers.child_resync import DEFAULT_RESYNC_SECONDS, register_child_resync
from sdxl_operator.handlers.child_watch import CHILD_RESOURCES, register_child_watch, watch_children_only
from sdxl_operator.handlers.cluster_login import discover_connection
from sdxl_operator.handlers.deployment_handlers import register_deployment_handlers
from sdxl_operator.handlers.finetune_handlers import register_finetune_handlers
from sdxl_operator.handlers.kube_api import KubeApi
from sdxl_operator.handlers.metadata_only_watches import kopf_session
from sdxl_operator.handlers.operator_context import OperatorContext
from sdxl_operator.handlers.operator_metrics import instrument_handlers
from sdxl_operator.handlers.quiet_successes import quiet_kopf_successes

ANNOTATION_PREFIX = "sdxl.io"
FINALIZER = "sdxl.io/kopf-finalizer"
WATCH_SERVER_TIMEOUT_SECONDS = 600


REPORTING_COMPONENT = "sdxl-operator"


def configure_kopf(settings: kopf.OperatorSettings, operator_settings: OperatorSettings | None = None) -> None:
    """Kopf settings every deployment of the operator uses.

    Events name the operator (``reportingComponent: sdxl-operator``, shown as "From" by ``kubectl
    describe``) and its pod (``reportingInstance``, from ``SDXL_POD_NAME``, else the host name, which is
    the pod's name in a cluster), not Kopf's defaults ``kopf``/``dev``.

    Handler progress and the diff-base go to annotations: the CRDs' status schemas are strict and
    would prune Kopf's own status fields. Only warnings and errors of Kopf's own logging become
    Events; the handlers post Events for the transitions people care about with ``kopf.event``,
    which this level does not filter.

    The child watches ask the API server for the operator's children only (:mod:`child_watch`), and
    Kopf's per-call success lines go to DEBUG (:mod:`quiet_successes`): at rest the log is silent.
    """
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=ANNOTATION_PREFIX)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=ANNOTATION_PREFIX, key="last-handled-configuration"
    )
    settings.persistence.finalizer = FINALIZER
    settings.posting.level = logging.WARNING
    settings.posting.reporting_component = REPORTING_COMPONENT
    settings.posting.reporting_instance = (
        (operator_settings.pod_name if operator_settings else None) or socket.gethostname() or REPORTING_COMPONENT
    )
    # Re-establish watches regularly: a watch connection that a load balancer drops silently would
    # otherwise leave the operator blind without an error (Kopf's docs, "Configuration").
    settings.watching.server_timeout = WATCH_SERVER_TIMEOUT_SECONDS
    settings.watching.client_timeout = WATCH_SERVER_TIMEOUT_SECONDS + 30
    settings.watching.connect_timeout = 30
    watch_children_only(settings)
    quiet_kopf_successes()


def build_registry(
    settings: OperatorSettings, context: OperatorContext | None = None, *, api_server: str | None = None,
    metrics_port: int | None = None, namespaces: Sequence[str] | None = None,
    resync_seconds: float = DEFAULT_RESYNC_SECONDS,
) -> kopf.OperatorRegistry:
    """A registry with the start-up, login and clean-up handlers and all controllers.

    ``api_server`` (a plain-HTTP URL without credentials, e.g. the sandbox's emulator) replaces the
    usual discovery: in-cluster service account, else the kubeconfig's current context.
    ``metrics_port``: serve the operator's Prometheus metrics (``/metrics``) on this port while it runs.
    Every resource handler counts its outcome there (:mod:`operator_metrics`).
    ``namespaces``: the namespaces the operator serves (None: all), where the safety-net resync of the
    children lists them every ``resync_seconds`` (0: no resync; :mod:`child_resync`).
    """
    registry = kopf.OperatorRegistry()
    context = context or OperatorContext(settings=settings)
    stop_metrics: list[Callable[[], None]] = []

    @kopf.on.startup(registry=registry)
    async def start_up(settings: kopf.OperatorSettings, **_: Any) -> None:
        configure_kopf(settings, context.settings)
        if metrics_port is not None and not stop_metrics:
            stop_metrics.append(context.metrics.serve(metrics_port))

    @kopf.on.login(registry=registry)
    async def log_in(settings: kopf.OperatorSettings, **kwargs: Any) -> kopf.AiohttpSession:
        # In-cluster service account, else the kubeconfig's current context: as kubectl does.
        connection = (kopf.ConnectionInfo(server=api_server, insecure=True) if api_server
                      else discover_connection(settings=settings, **kwargs))
        # The handlers' requests go out with the same credentials as Kopf's watches, renewed with them.
        if context.kube is None:
            context.kube = KubeApi(connection, metrics=context.metrics)
        else:
            context.kube.use(connection)
        return kopf_session(connection, metadata_only=CHILD_RESOURCES)

    @kopf.on.cleanup(registry=registry)
    async def clean_up(**_: Any) -> None:
        if context.kube is not None:
            await context.kube.close()
            context.kube = None
        while stop_metrics:
            stop_metrics.pop()()

    finetunes = register_finetune_handlers(registry, context, namespaces)
    deployments = register_deployment_handlers(registry, context, namespaces)
    changes = register_child_watch(registry, finetunes=finetunes, deployments=deployments)
    register_child_resync(registry, changes, context, interval=resync_seconds, namespaces=namespaces)
    instrument_handlers(registry, context.metrics)
    return registry
