"""Kopf handlers of SDXLFineTune: thin glue between the API and the pure builders/status function.

* create / resume: validate, then (before the Job exists) the administrator's limits
  (:mod:`admin_policy`: store prefixes, placement keys, image counts) and whether another fine-tune
  holds the same explicit ``spec.output`` (:mod:`shared_output`) → a refusal ends as Failed/InvalidSpec
  with no Job (permanent); otherwise create the ``<ft>-spec`` ConfigMap and ``<ft>-train`` Job (409 means they are already
  there, so a retried or resumed handler creates nothing twice).
* a change of the Job or its pods recomputes the status at once (:mod:`child_watch`), without reading
  the pod log; while the run is unfinished, a tick recomputes it every status interval too
  (:mod:`status_ticker`), reading the last progress line of the pod log while the trainer runs, and
  sees the time-bound states (a pod Pending too long). No finalizer is held: deleting a fine-tune
  never waits for the operator.
* resources in reserved namespaces (:mod:`reserved_namespaces`) match no handler at all.

Handlers write ``patch.status`` and return None (a return value would be stored in the status,
which the CRD's strict schema prunes).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, cast

import kopf

from sdxl_contract.failure_reasons import FailureReason
from sdxl_operator.core.custom_resources import FINETUNES, GROUP, VERSION
from sdxl_operator.core.labels import job_pods_selector
from sdxl_operator.core.naming import finetune_job_name
from sdxl_operator.handlers.child_creation import ChildRejected, create_child, handler_error
from sdxl_operator.handlers.child_ownership import NameConflict, require_controlled
from sdxl_operator.handlers.kube_api import KubeApiError
from sdxl_operator.handlers.operator_context import OperatorContext
from sdxl_operator.handlers.status_events import post_transition_events
from sdxl_operator.handlers.status_refresh import StatusRefresher
from sdxl_operator.handlers.status_ticker import StatusTicker, register_status_ticker
from sdxl_operator.handlers.workload_prerequisites import StorageNotFound, ensure_workload_prerequisites
from sdxl_operator.manifests.spec_configmap import build_spec_configmap
from sdxl_operator.manifests.training_job import CONTAINER, build_training_job
from sdxl_operator.spec.admin_policy import finetune_policy_errors
from sdxl_operator.spec.finetune_validation import validate_finetune_spec
from sdxl_operator.spec.reserved_namespaces import is_reserved
from sdxl_operator.spec.resolved_spec import resolve_finetune_spec, resolved_finetune_spec
from sdxl_operator.spec.shared_output import output_in_use
from sdxl_operator.status.finetune_status import (
    SUCCEEDED,
    TRAINING,
    compute_finetune_status,
    failed_status,
    initial_status,
    invalid_spec_status,
    is_terminal,
    waiting_status,
)
from sdxl_operator.status.pod_problems import failed_create_selector, job_condition, newest_pod
from sdxl_operator.status.status_patch import status_patch
from sdxl_operator.status.workload_output import last_progress

LOG_TAIL_LINES = 20


def _is_unfinished(status: Mapping[str, Any], **_: Any) -> bool:
    return not is_terminal(status)


async def _create_children(body: kopf.Body, context: OperatorContext, logger: kopf.Logger) -> None:
    """The ServiceAccount and claims the pod needs, then the spec ConfigMap and the training Job.

    Raises NameConflict, ChildRejected, StorageNotFound, or KubeApiError (temporary).
    """
    meta = body["metadata"]
    spec = resolved_finetune_spec(
        body.get("spec", {}), name=meta["name"], namespace=meta["namespace"], uid=meta["uid"],
        artifact_store=context.settings.artifact_store,
    )
    resolved = resolve_finetune_spec(spec, name=meta["name"], namespace=meta["namespace"], uid=meta["uid"],
                                     artifact_store=context.settings.artifact_store)
    job = build_training_job(body, spec, context.settings)
    if await ensure_workload_prerequisites(context.api, meta["namespace"], [job["spec"]["template"]["spec"]],
                                           context.settings):
        logger.info(f"created the workload ServiceAccount {context.settings.workload_service_account}")
    for manifest in (build_spec_configmap(body, resolved), job):
        await create_child(context.api, manifest, body, logger)


def register_finetune_handlers(registry: kopf.OperatorRegistry, context: OperatorContext,
                               namespaces: Sequence[str] | None = None) -> StatusRefresher:
    """Register the SDXLFineTune handlers on ``registry``, using ``context``, for ``namespaces`` (None:
    all); the refresher the events of the fine-tunes' children ask for status refreshes through
    (:mod:`child_watch`)."""

    async def refresh_on_change(namespace: str, name: str) -> None:
        await refresh_finetune(namespace, name, context)

    refresher = StatusRefresher("SDXLFineTune", refresh_on_change,
                                max_retry_seconds=context.settings.status_interval_seconds)

    def served(namespace: str | None, **_: Any) -> bool:
        return not is_reserved(namespace, context.settings.reserved_namespaces)

    def unfinished(status: Mapping[str, Any], namespace: str | None, **_: Any) -> bool:
        return served(namespace) and _is_unfinished(status)

    async def accept(body: kopf.Body, patch: kopf.Patch, logger: kopf.Logger, *, first_time: bool) -> None:
        status = body.get("status") or {}
        if is_terminal(status):
            return
        generation = int(body["metadata"].get("generation") or 1)
        namespace = body["metadata"]["namespace"]
        errors = validate_finetune_spec(body.get("spec"))
        # The administrator's limits and the output's owner are checked before the Job exists only: a
        # run already started is not failed by a limit tightened later (its Job would go on running).
        if not errors and not status.get("trainingJob"):
            errors = finetune_policy_errors(body.get("spec") or {}, namespace, context.settings)
        if not errors and not status.get("trainingJob") and (body.get("spec") or {}).get("output"):
            try:
                others = await context.api.list_custom(GROUP, VERSION, FINETUNES, namespace)
            except KubeApiError as exc:
                raise handler_error(exc) from exc
            conflict = output_in_use(body, others)
            errors = [conflict] if conflict else []
        if errors:
            new = invalid_spec_status(errors, now=context.clock(), generation=generation, previous=status)
            patch["status"] = status_patch(status, new)
            kopf.event(body, type="Warning", reason=FailureReason.INVALID_SPEC.value, message=new["failure"]["message"])
            raise kopf.PermanentError(f"invalid spec: {new['failure']['message']}")
        try:
            await _create_children(body, context, logger)
        except StorageNotFound as exc:
            # Waiting, not failed: the claim may be created now; the handler tries again.
            new = waiting_status(exc.reason, exc.message, now=context.clock(), generation=generation, previous=status)
            patch["status"] = status_patch(status, new)
            if (status.get("failure") or {}).get("reason") != exc.reason.value:
                kopf.event(body, type="Warning", reason=exc.reason.value, message=exc.message)
            raise kopf.TemporaryError(exc.message, delay=context.settings.status_interval_seconds) from exc
        except (NameConflict, ChildRejected) as exc:
            new = failed_status(exc.reason, exc.message, now=context.clock(), generation=generation, previous=status)
            patch["status"] = status_patch(status, new)
            kopf.event(body, type="Warning", reason=exc.reason.value, message=new["failure"]["message"])
            raise kopf.PermanentError(exc.message) from exc
        except KubeApiError as exc:
            raise handler_error(exc) from exc
        if first_time or not status.get("trainingJob") or (status.get("failure") or {}).get("reason") == \
                FailureReason.STORAGE_NOT_FOUND.value:
            job_name = finetune_job_name(body["metadata"]["name"])
            patch["status"] = status_patch(status, initial_status(job_name=job_name, now=context.clock(),
                                                                  generation=generation))
            kopf.event(body, type="Normal", reason="JobCreated", message=f"created training Job {job_name}")

    @kopf.on.create(GROUP, VERSION, FINETUNES, registry=registry, when=served)
    async def finetune_created(body: kopf.Body, patch: kopf.Patch, logger: kopf.Logger, **_: Any) -> None:
        await accept(body, patch, logger, first_time=True)

    @kopf.on.resume(GROUP, VERSION, FINETUNES, registry=registry, when=served)
    async def finetune_resumed(body: kopf.Body, patch: kopf.Patch, logger: kopf.Logger, **_: Any) -> None:
        await accept(body, patch, logger, first_time=False)

    # While a fine-tune runs its status is also recomputed every interval (:mod:`status_ticker`),
    # reading the last progress line of the trainer's log; a finished one is not followed.
    async def tick(namespace: str, name: str) -> None:
        async with refresher.lock(namespace, name):
            await refresh_finetune(namespace, name, context, read_progress=True)

    ticker = StatusTicker("SDXLFineTune", tick, context.settings.status_interval_seconds)
    register_status_ticker(registry, ticker, context, namespaces, plural=FINETUNES,
                           needs_ticks=lambda body, namespace: unfinished(body.get("status") or {}, namespace))

    return refresher


async def refresh_finetune(namespace: str, name: str, context: OperatorContext, *,
                           read_progress: bool = False) -> None:
    """Recompute and write the status of fine-tune ``namespace/name`` now (a child changed, or its tick).

    The progress is read from the pod log only with ``read_progress``: the ticks read it at their own
    pace, a child's change does not.
    """
    if context.kube is None:
        return  # the operator is stopping: its API client is already closed
    found = await context.api.read_custom(GROUP, VERSION, FINETUNES, namespace, name)
    if found is None or is_terminal(found.get("status")) or \
            is_reserved(namespace, context.settings.reserved_namespaces):
        return
    body = kopf.Body(cast(kopf.RawBody, found))
    patch = kopf.Patch()
    await refresh_status(body, patch, kopf.LocalObjectLogger(body=body, settings=kopf.OperatorSettings()), context,
                         read_progress=read_progress)
    if patch.get("status"):
        await context.api.patch_custom_status(GROUP, VERSION, FINETUNES, namespace, name, {"status": patch["status"]})


async def refresh_status(body: kopf.Body, patch: kopf.Patch, logger: kopf.Logger, context: OperatorContext, *,
                         read_progress: bool = True) -> None:
    """Recompute the status of one fine-tune and patch what changed; post Events on transitions.

    The pod log is read (its last progress line) only with ``read_progress`` while the trainer runs,
    and once when the run ends, for its last progress line.
    """
    previous: Mapping[str, Any] = body.get("status") or {}
    job_name = previous.get("trainingJob")
    if not job_name or is_terminal(previous):
        return  # the create/resume handler has not finished (or the run is over)
    namespace = body["metadata"]["namespace"]
    api = context.api
    generation = int(previous.get("observedGeneration") or body["metadata"].get("generation") or 1)
    events: list[dict[str, Any]] = []
    try:
        job = await api.read("Job", namespace, job_name)
        if job is None:
            logger.warning(f"training Job {job_name} is missing; creating it again")
            await _create_children(body, context, logger)
            return
        # Never read another object's Job as this run's result (an older SDXLFineTune of this name).
        require_controlled(job, body, "Job")
        pods = await api.list_pods(namespace, job_pods_selector(job_name))
        pod = newest_pod(pods)
        log_tail = None
        pod_phase = (pod.get("status") or {}).get("phase") if pod is not None else None
        ended = job_condition(job, "Complete", "Failed", "SuccessCriteriaMet", "FailureTarget") is not None
        if pod is not None and ((read_progress and pod_phase == "Running")
                                or (ended and pod_phase in ("Succeeded", "Failed"))):
            log_tail = await api.read_pod_log_tail(namespace, pod["metadata"]["name"], CONTAINER, LOG_TAIL_LINES)
        if pod is None and not ended:
            events = await api.list_events(namespace, failed_create_selector(job))
    except StorageNotFound as exc:  # the Job went and its claim too: wait for the claim, then recreate
        new = {**waiting_status(exc.reason, exc.message, now=context.clock(), generation=generation,
                                previous=previous), "trainingJob": job_name}
        patch["status"] = status_patch(previous, new)
        _post_transition_events(body, previous, new)
        return
    except (NameConflict, ChildRejected) as exc:
        new = failed_status(exc.reason, exc.message, now=context.clock(), generation=generation, previous=previous)
        patch["status"] = status_patch(previous, new)
        _post_transition_events(body, previous, new)
        return
    except KubeApiError as exc:
        logger.warning(f"cannot read the training Job's state yet: {exc}")
        return
    # The run uses the spec it started with (the CRD makes spec immutable): report that generation,
    # not a newer one written past the CRD's rule (e.g. where the CRD is installed without CEL).
    if int(body["metadata"].get("generation") or generation) != generation:
        logger.warning("the spec changed after training started; the running Job keeps the old spec. "
                       "Create a new SDXLFineTune to train with other settings.")
    new = compute_finetune_status(
        job_name=job_name, job=job, pods=pods, progress=last_progress(log_tail), now=context.clock(),
        previous=previous, generation=generation,
        pending_grace_seconds=context.settings.pending_grace_seconds, events=events,
    )
    if new == dict(previous):
        return
    patch["status"] = status_patch(previous, new)
    _post_transition_events(body, previous, new)


def _phase_event(status: Mapping[str, Any]) -> tuple[str, str] | None:
    """The Normal event of a fine-tune entering its phase: the trainer running, or the LoRA written."""
    if status.get("phase") == TRAINING:
        return "Training", "the trainer is running"
    if status.get("phase") == SUCCEEDED:
        return "Succeeded", f"training finished; LoRA at {(status.get('artifacts') or {}).get('lora', 'the output location')}"
    return None


def _post_transition_events(body: kopf.Body, previous: Mapping[str, Any], new: Mapping[str, Any]) -> None:
    post_transition_events(body, previous, new, _phase_event)
