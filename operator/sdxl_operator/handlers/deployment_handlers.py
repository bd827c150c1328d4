"""Kopf handlers of SDXLDeployment: thin glue between the API and the pure builders/status function.

create / resume / update, a change of a child (:mod:`child_watch`) or of its SDXLFineTune, and a
tick while unsettled (:mod:`status_ticker`) all run one idempotent :func:`reconcile`:

1. validate, then apply the administrator's limits (:mod:`admin_policy`: store prefixes, placement
   keys); invalid: phase Failed / InvalidSpec, nothing created;
2. find the model source: ``spec.lora``, or the SDXLFineTune's LoRA once it has succeeded (read each
   time; a failed fine-tune fails the deployment, a missing or running one makes it wait);
3. compute the compile key and make sure its artifact exists. The operator cannot read the artifact
   store, so "exists" means: this deployment's status already recorded it, or a compile Job with that
   key (any deployment's: found by the ``sdxl.io/compile-key`` label) succeeded. A Job with the key
   that is still running is followed instead of starting another, so identical deployments share one
   compile. Otherwise this deployment creates its own ``<dep>-compile-<key8>`` Job (and ConfigMap);
   if that one failed, the deployment is Failed with the compile's reason until the spec changes. A
   shared Job's owner may be deleted mid-compile (the Job goes with it); the next cycle then finds
   no Job and starts its own, which the workload answers from the store at once when the artifact is
   complete. Deployments created together race to that lookup, so the lookup and the create run under
   a lock per compile key in this operator process (one operator is active at a time: Kopf peering);
4. once compiled: create or patch the Deployment (rolling update onto the new artifact), the Service,
   the NetworkPolicy (:mod:`inference_network_policy`) and the HorizontalPodAutoscaler. While a new key compiles, the Deployment keeps its template (the
   old artifact serves); only ``replicas`` follows the spec at once;
5. write the status computed by :func:`deployment_status.compute_deployment_status`.

A set of fine-tunes (``spec.fineTunes`` / ``spec.fineTuneSelector``) replaces steps 2-3: the
fine-tunes of the namespace are resolved (:func:`adapter_set.resolve_adapter_set`) into the
``<dep>-adapters`` ConfigMap the pods read, and nothing is compiled. A change of an SDXLFineTune that
moves it in or out of a set re-resolves the deployments it concerns (``finetune_changed``).

Nothing here deletes children except this deployment's autoscaler when ``spec.autoscaling`` was removed
or the operator switched between a HorizontalPodAutoscaler and a KEDA ScaledObject (:mod:`autoscaler_sync`)
and this deployment's NetworkPolicy once network policies are turned off; ownerReferences let the
garbage collector remove the rest with the SDXLDeployment. Resources in reserved namespaces match no
handler. Handlers write ``patch.status`` and return None.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any, cast

import kopf

from sdxl_contract.compile_key import compile_key, lora_digest
from sdxl_operator.core.accelerators import NEURON, image_for
from sdxl_operator.core.custom_resources import DEPLOYMENTS, FINETUNES, GROUP, VERSION
from sdxl_operator.core.labels import (
    COMPILE_KEY,
    SERVER,
    compile_key_label,
    deployment_labels,
    job_pods_selector,
    selector,
)
from sdxl_operator.core.naming import compile_job_name, deployment_name
from sdxl_operator.core.settings import OperatorSettings
from sdxl_operator.handlers.adapters_configmap_sync import ensure_adapters_configmap
from sdxl_operator.handlers.autoscaler_sync import ensure_autoscaler
from sdxl_operator.handlers.child_creation import (
    RETRY_DELAY_SECONDS,
    ChildRejected,
    create_child,
    is_refusal,
    refusal,
)
from sdxl_operator.handlers.child_ownership import (
    NameConflict,
    is_controlled_by,
    require_controlled,
    shared_compile_owner,
)
from sdxl_operator.handlers.child_watch import SeenVersions
from sdxl_operator.handlers.disruption_budget_sync import ensure_disruption_budget
from sdxl_operator.handlers.kube_api import KubeApi, KubeApiError
from sdxl_operator.handlers.operator_context import OperatorContext
from sdxl_operator.handlers.server_spec_sync import ensure_server_spec_configmap
from sdxl_operator.handlers.status_events import post_transition_events
from sdxl_operator.handlers.status_refresh import StatusRefresher
from sdxl_operator.handlers.status_ticker import StatusTicker, register_status_ticker
from sdxl_operator.handlers.workload_prerequisites import StorageNotFound, ensure_workload_prerequisites
from sdxl_operator.manifests.compile_job import build_compile_configmap, build_compile_job
from sdxl_operator.manifests.inference_deployment import TEMPLATE_HASH, build_inference_deployment
from sdxl_operator.manifests.inference_network_policy import build_network_policy
from sdxl_operator.manifests.inference_service import build_inference_service, service_url
from sdxl_operator.manifests.server_spec import server_spec
from sdxl_operator.spec.adapter_set import AdapterSet, is_adapter_set_spec, needs_refresh, resolve_adapter_set
from sdxl_operator.spec.adapter_set_spec import (
    adapter_set_key,
    adapter_set_source,
    adapter_set_spec_errors,
    resolve_adapter_set_spec,
)
from sdxl_operator.spec.admin_policy import deployment_policy_errors
from sdxl_operator.spec.deployment_validation import validate_deployment_spec
from sdxl_operator.spec.model_source import FineTuneWait, ModelSource, model_source
from sdxl_operator.spec.reserved_namespaces import is_reserved
from sdxl_operator.spec.resolved_deployment_spec import resolve_deployment_spec
from sdxl_operator.status.adapter_set_status import with_adapter_set_status
from sdxl_operator.status.compile_outcome import (
    CompileDone,
    CompileFailed,
    CompileOutcome,
    CompileRunning,
    compile_outcome,
)
from sdxl_operator.status.conditions import find_condition
from sdxl_operator.status.deployment_status import (
    CompileView,
    DeploymentObservation,
    blocked_status,
    compute_deployment_status,
    invalid_spec_status,
    is_settled,
)
from sdxl_operator.status.finetune_status import is_terminal
from sdxl_operator.status.pod_problems import failed_create_selector
from sdxl_operator.status.status_patch import status_patch


def key_of(resolved: Mapping[str, Any], settings: OperatorSettings) -> str:
    """The compile key of a resolved deployment spec (the image is the runtime id)."""
    accelerator = str(resolved["accelerator"])
    neuron: Mapping[str, Any] = resolved.get("neuron") or {}
    return compile_key(
        base_model=str(resolved["baseModel"]), base_revision=resolved.get("baseModelRevision"),
        lora=lora_digest(resolved.get("loraSha256"), str(resolved["lora"])),
        lora_scale=float(resolved["loraScale"]), accelerator=accelerator,
        shapes=neuron if accelerator == NEURON else None,
        auto_cast_type=neuron.get("autoCastType") if accelerator == NEURON else None,
        runtime_id=image_for(accelerator, settings),
    )


def _recorded_compile(previous: Mapping[str, Any], key: str) -> CompileDone | None:
    compiled = find_condition(previous.get("conditions"), "Compiled") or {}
    if previous.get("compileKey") == key and previous.get("compiledArtifact") and compiled.get("status") == "True":
        return CompileDone(str(previous["compiledArtifact"]), compiled.get("reason") == "CacheHit")
    return None


class CompileLocks:
    """One asyncio lock per (namespace, compile key): a lookup and the create it decides on are atomic."""

    def __init__(self) -> None:
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}

    def __call__(self, namespace: str, key: str) -> asyncio.Lock:
        return self._locks.setdefault((namespace, key), asyncio.Lock())


async def ensure_compile(
    body: kopf.Body, resolved: Mapping[str, Any], key: str, context: OperatorContext, logger: kopf.Logger,
    locks: CompileLocks,
) -> tuple[str | None, CompileOutcome]:
    """(compile Job followed, outcome) for ``key``, creating this deployment's Job when none will do."""
    recorded = _recorded_compile(body.get("status") or {}, key)
    if recorded is not None:
        return (body.get("status") or {}).get("compileJob"), recorded
    async with locks(body["metadata"]["namespace"], key):
        return await _find_or_create_compile(body, resolved, key, context, logger)


async def _trusted_compile_jobs(
    body: kopf.Body, jobs: list[dict[str, Any]], context: OperatorContext
) -> list[dict[str, Any]]:
    """The Jobs with the key that this deployment may follow: its own, or a live SDXLDeployment's.

    A Job another SDXLDeployment of the namespace controls is shared only while that deployment still
    exists with that uid (not a leftover of an older object of that name); a Job no SDXLDeployment
    controls is never read as a compile result, whatever its labels say.
    """
    namespace = body["metadata"]["namespace"]
    alive: dict[tuple[str, str], bool] = {}
    trusted = []
    for job in jobs:
        if is_controlled_by(job, body):
            trusted.append(job)
            continue
        owner = shared_compile_owner(job)
        if owner is None:
            continue
        if owner not in alive:
            found = await context.api.read_custom(GROUP, VERSION, DEPLOYMENTS, namespace, owner[0])
            alive[owner] = found is not None and (found.get("metadata") or {}).get("uid") == owner[1]
        if alive[owner]:
            trusted.append(job)
    return trusted


async def _find_or_create_compile(
    body: kopf.Body, resolved: Mapping[str, Any], key: str, context: OperatorContext, logger: kopf.Logger
) -> tuple[str | None, CompileOutcome]:
    api, settings, now = context.api, context.settings, context.clock()
    namespace, name = body["metadata"]["namespace"], body["metadata"]["name"]
    own = compile_job_name(name, key)
    listed = [job for job in await api.list_jobs(namespace, f"{COMPILE_KEY}={compile_key_label(key)}")
              if ((job.get("metadata") or {}).get("annotations") or {}).get(COMPILE_KEY) == key]
    jobs = await _trusted_compile_jobs(body, listed, context)
    jobs.sort(key=lambda job: job["metadata"]["name"] != own)  # this deployment's own Job first
    own_failure: CompileFailed | None = None
    running: tuple[str, CompileRunning] | None = None

    async def with_pods(job: Mapping[str, Any]) -> CompileOutcome:
        pods = await api.list_pods(namespace, job_pods_selector(job["metadata"]["name"]))
        events = [] if pods else await api.list_events(namespace, failed_create_selector(job))
        return compile_outcome(job, pods, now=now, pending_grace_seconds=settings.pending_grace_seconds,
                               events=events)

    for job in jobs:
        job_name = job["metadata"]["name"]
        # The Job alone says done or failed; its pods are read only where they add something.
        outcome = compile_outcome(job, [], now=now, pending_grace_seconds=settings.pending_grace_seconds)
        if isinstance(outcome, CompileDone):
            return job_name, outcome
        if isinstance(outcome, CompileFailed):
            if job_name == own:  # its pods hold the reason the compile reported
                detailed = await with_pods(job)
                own_failure = detailed if isinstance(detailed, CompileFailed) else outcome
            continue
        if running is None:
            still = await with_pods(job)
            if isinstance(still, CompileRunning):
                running = (job_name, still)
    if running is not None:
        return running
    if own_failure is not None:
        return own, own_failure
    job_manifest = build_compile_job(body, resolved, key, settings)
    if await ensure_workload_prerequisites(api, namespace, [job_manifest["spec"]["template"]["spec"]], settings):
        logger.info(f"created the workload ServiceAccount {settings.workload_service_account}")
    # A Job of this name that is not this deployment's (found by neither lookup) is a NameConflict here.
    for manifest in (build_compile_configmap(body, resolved, key), job_manifest):
        await create_child(api, manifest, body, logger)
    kopf.event(body, type="Normal", reason="CompileJobCreated", message=f"created compile Job {own} for key {key[:8]}")
    return own, CompileRunning("CompileJobCreated", f"created compile Job {own}")


async def ensure_serving(
    body: kopf.Body, resolved: Mapping[str, Any], current: Mapping[str, Any] | None, *, key: str, artifact: str,
    context: OperatorContext, logger: kopf.Logger, full: bool,
) -> dict[str, Any] | None:
    """Create or patch the Deployment for ``artifact``; check the Service and HPA are this deployment's (or
    create them); patch the HPA when the Deployment changed or ``full``.

    Returns the Deployment as written when it was created or patched, else None.
    """
    api, namespace = context.api, body["metadata"]["namespace"]
    desired = build_inference_deployment(body, resolved, key=key, artifact=artifact, settings=context.settings)
    # The spec the pods read, in place before any pod that reads it is created.
    await ensure_server_spec_configmap(api, body, server_spec(resolved, body["spec"]), logger)
    changed = False
    if current is None:
        if await ensure_workload_prerequisites(api, namespace, [desired["spec"]["template"]["spec"]],
                                               context.settings):
            logger.info(f"created the workload ServiceAccount {context.settings.workload_service_account}")
        await create_child(api, desired, body, logger)
        changed = True
    elif ((current.get("metadata") or {}).get("annotations") or {}).get(TEMPLATE_HASH) != \
            desired["metadata"]["annotations"][TEMPLATE_HASH]:
        meta = desired["metadata"]
        await _patch_child(api, "Deployment", namespace, meta["name"], {
            "metadata": {"labels": meta["labels"], "annotations": meta["annotations"]}, "spec": desired["spec"]})
        logger.info(f"patched Deployment {meta['name']} (model {key[:8]})")
        changed = True
    # The Service and the HPA are checked on every pass, not only when something changed: until they
    # are this deployment's own, it is not Ready (its URL would reach another application's pods).
    service = build_inference_service(body)
    found = await api.read("Service", namespace, service["metadata"]["name"])
    if found is None:
        await create_child(api, service, body, logger)
    else:
        require_controlled(found, body, "Service")
    await _ensure_network_policy(api, body, context.settings, logger)
    await ensure_disruption_budget(api, body, resolved, logger)
    await ensure_autoscaler(api, body, resolved, context.settings, logger, write=changed or full)
    return desired if changed else None


async def _ensure_network_policy(api: KubeApi, body: kopf.Body, settings: OperatorSettings,
                                 logger: kopf.Logger) -> None:
    """Create the server pods' NetworkPolicy, or bring this deployment's own one up to the settings.

    With ``networkPolicy.enabled`` off, this deployment's own policy is deleted; another application's
    policy of that name is never touched (and only blocks the deployment while policies are on).
    """
    namespace = body["metadata"]["namespace"]
    name = deployment_name(body["metadata"]["name"])
    existing = await api.read("NetworkPolicy", namespace, name)
    if not settings.network_policy:
        if existing is not None and is_controlled_by(existing, body) and \
                await api.delete("NetworkPolicy", namespace, name):
            logger.info(f"deleted NetworkPolicy {name}: network policies are turned off")
        return
    desired = build_network_policy(body, settings.network_policy_sources)
    if existing is None:
        await create_child(api, desired, body, logger)
        return
    require_controlled(existing, body, "NetworkPolicy")
    if existing.get("spec") != desired["spec"]:
        await _patch_child(api, "NetworkPolicy", namespace, name, {"spec": desired["spec"]})
        logger.info(f"patched NetworkPolicy {name} to the operator's allowed sources")


async def _patch_child(api: KubeApi, kind: str, namespace: str, name: str, body: Mapping[str, Any]) -> None:
    """A patch the API server refuses (e.g. an immutable field) is a failure with its message."""
    try:
        await api.patch(kind, namespace, name, body)
    except KubeApiError as exc:
        if is_refusal(exc):
            raise refusal(exc) from exc
        raise


async def _scale_only(
    body: kopf.Body, resolved: Mapping[str, Any], current: Mapping[str, Any], context: OperatorContext
) -> None:
    """While a new model compiles, follow spec.replicas without touching the pod template."""
    if resolved.get("autoscaling"):
        return
    wanted = int(resolved["replicas"])
    if (current.get("spec") or {}).get("replicas") != wanted:
        await _patch_child(context.api, "Deployment", body["metadata"]["namespace"], current["metadata"]["name"],
                                {"spec": {"replicas": wanted}})


async def reconcile(
    body: kopf.Body, patch: kopf.Patch, logger: kopf.Logger, context: OperatorContext, locks: CompileLocks, *,
    full: bool,
) -> None:
    """One pass of the controller over one SDXLDeployment (see the module docstring)."""
    meta = body["metadata"]
    name, namespace = meta["name"], meta["namespace"]
    generation = int(meta.get("generation") or 1)
    previous: Mapping[str, Any] = body.get("status") or {}
    spec: Mapping[str, Any] = body.get("spec") or {}
    now = context.clock()
    adapter_set: AdapterSet | None = None
    validate = adapter_set_spec_errors if is_adapter_set_spec(spec) else validate_deployment_spec
    errors = validate(spec) or deployment_policy_errors(spec, namespace, context.settings)
    if errors:
        new = invalid_spec_status(errors, now=now, generation=generation, previous=previous)
        _write_status(body, patch, previous, new)
        return
    api = context.api
    try:
        finetune = None
        if spec.get("fineTune"):
            finetune = await api.read_custom(GROUP, VERSION, FINETUNES, namespace, str(spec["fineTune"]))
        if is_adapter_set_spec(spec):
            adapter_set = resolve_adapter_set(spec, await api.list_custom(GROUP, VERSION, FINETUNES, namespace),
                                              namespace=namespace)
            source: ModelSource | FineTuneWait = adapter_set_source(spec)
        else:
            source = model_source(spec, finetune)
        deployment = await api.read("Deployment", namespace, deployment_name(name))
        # Never read, patch or scale another application's Deployment (or an older object's).
        require_controlled(deployment, body, "Deployment")
        view: CompileView | None = None
        server_pods: list[dict[str, Any]] | None = None
        job_name: str | None
        outcome: CompileOutcome
        if isinstance(source, ModelSource) and adapter_set is not None:
            # A set compiles nothing: the pods load the base model and read the adapters ConfigMap.
            resolved = resolve_adapter_set_spec(spec, name=name, namespace=namespace, uid=meta["uid"])
            key = adapter_set_key(resolved, context.settings)
            await ensure_adapters_configmap(api, body, adapter_set, logger)
            job_name, outcome = None, CompileDone(source.base_model, False)
        elif isinstance(source, ModelSource):
            resolved = resolve_deployment_spec(spec, source, name=name, namespace=namespace, uid=meta["uid"])
            key = key_of(resolved, context.settings)
            job_name, outcome = await ensure_compile(body, resolved, key, context, logger, locks)
        if isinstance(source, ModelSource):
            view = CompileView(key, job_name, outcome)
            if isinstance(outcome, CompileDone) and outcome.artifact:
                written = await ensure_serving(body, resolved, deployment, key=key, artifact=outcome.artifact,
                                               context=context, logger=logger, full=full)
                if written is not None and deployment is None:
                    # Just created: no status and no pods yet, so nothing to read back.
                    deployment, server_pods = written, []
                elif written is not None:
                    deployment = await api.read("Deployment", namespace, deployment_name(name))
            elif deployment is not None:
                await _scale_only(body, resolved, deployment, context)
        if server_pods is None:
            server_pods = await api.list_pods(namespace, selector(deployment_labels(name, SERVER))) \
                if deployment else []
    except (NameConflict, ChildRejected, StorageNotFound) as exc:
        # Nothing more is created or changed; the next pass tries again (the object may be gone by then).
        logger.warning(f"blocked: {exc.message}")
        new = blocked_status(exc.reason, exc.message, now=now, generation=generation, previous=previous,
                             selector=selector(deployment_labels(name, SERVER)))
        _write_status(body, patch, previous, new)
        return
    except KubeApiError as exc:
        logger.warning(f"cannot reconcile yet: {exc}")
        raise kopf.TemporaryError(str(exc), delay=RETRY_DELAY_SECONDS) from exc
    new = compute_deployment_status(DeploymentObservation(
        generation=generation, now=now, previous=previous, source=source, compile=view, deployment=deployment,
        server_pods=server_pods, url=service_url(name, namespace),
        pending_grace_seconds=context.settings.pending_grace_seconds,
        selector=selector(deployment_labels(name, SERVER)),
    ))
    if adapter_set is not None:
        new = with_adapter_set_status(new, adapter_set, base_model=str(spec["baseModel"]), now=now,
                                      generation=generation)
    _write_status(body, patch, previous, new)


def _write_status(body: kopf.Body, patch: kopf.Patch, previous: Mapping[str, Any], new: Mapping[str, Any]) -> None:
    if dict(new) == dict(previous):
        return
    patch["status"] = status_patch(previous, new)
    post_transition_events(body, previous, new, _phase_event)


def _phase_event(status: Mapping[str, Any]) -> tuple[str, str]:
    """The Normal event of a deployment entering its phase: the phase, in its Ready condition's words."""
    ready = find_condition(status.get("conditions"), "Ready") or {}
    return str(status.get("phase")), str(ready.get("message") or status.get("phase"))


# Kopf's index of which SDXLDeployments use which fine-tune (``finetune_users``).
FinetuneUsers = kopf.Index[tuple[str, str | None], str]


def register_deployment_handlers(registry: kopf.OperatorRegistry, context: OperatorContext,
                                 namespaces: Sequence[str] | None = None) -> StatusRefresher:
    """Register the SDXLDeployment handlers on ``registry``, using ``context``, for ``namespaces`` (None:
    all); the refresher the events of the deployments' children ask for status refreshes through
    (:mod:`child_watch`)."""
    locks = CompileLocks()

    async def refresh_on_change(namespace: str, name: str) -> None:
        await refresh_deployment(namespace, name, context, locks)

    refresher = StatusRefresher("SDXLDeployment", refresh_on_change,
                                max_retry_seconds=context.settings.status_interval_seconds)

    def served(namespace: str | None, **_: Any) -> bool:
        return not is_reserved(namespace, context.settings.reserved_namespaces)

    async def reconcile_locked(body: kopf.Body, patch: kopf.Patch, logger: kopf.Logger, *, full: bool) -> None:
        async with refresher.lock(body["metadata"]["namespace"], body["metadata"]["name"]):
            await reconcile(body, patch, logger, context, locks, full=full)

    @kopf.on.create(GROUP, VERSION, DEPLOYMENTS, registry=registry, when=served)
    async def deployment_created(body: kopf.Body, patch: kopf.Patch, logger: kopf.Logger, **_: Any) -> None:
        await reconcile_locked(body, patch, logger, full=True)

    @kopf.on.resume(GROUP, VERSION, DEPLOYMENTS, registry=registry, when=served)
    async def deployment_resumed(body: kopf.Body, patch: kopf.Patch, logger: kopf.Logger, **_: Any) -> None:
        await reconcile_locked(body, patch, logger, full=True)

    @kopf.on.update(GROUP, VERSION, DEPLOYMENTS, field="spec", registry=registry, when=served)
    async def deployment_updated(body: kopf.Body, patch: kopf.Patch, logger: kopf.Logger, **_: Any) -> None:
        await reconcile_locked(body, patch, logger, full=True)

    # While a deployment is unsettled (pending, compiling, deploying, blocked) its status is also
    # recomputed every interval (:mod:`status_ticker`): that sees what no event announces (a pod Pending
    # past the grace period, a claim created). A settled (Ready) one is not followed: the changes of its
    # children (child_watch) and of its SDXLFineTune (below) recompute its status.
    async def tick(namespace: str, name: str) -> None:
        async with refresher.lock(namespace, name):
            await refresh_deployment(namespace, name, context, locks)

    ticker = StatusTicker("SDXLDeployment", tick, context.settings.status_interval_seconds)
    register_status_ticker(registry, ticker, context, namespaces, plural=DEPLOYMENTS,
                           needs_ticks=lambda body, namespace: served(namespace) and not is_settled(body))

    # Which SDXLDeployments a fine-tune's change concerns, kept from the deployments' watch: a change of
    # one of 200 fine-tunes must not list all 1,000 deployments of its namespace (each such list is
    # megabytes; while fine-tunes finish together, tens were in flight at once).
    @kopf.index(GROUP, VERSION, DEPLOYMENTS, registry=registry, id="finetune_users")
    def finetune_users(namespace: str | None, name: str | None, spec: Mapping[str, Any], **_: Any
                       ) -> dict[tuple[str, str | None], str]:
        """(namespace, fine-tune name) → deployment of that one fine-tune; (namespace, None) → a set."""
        if not namespace or not name:
            return {}
        if is_adapter_set_spec(spec):
            return {(namespace, None): name}
        return {(namespace, str(spec["fineTune"])): name} if spec.get("fineTune") else {}

    seen = SeenVersions()

    @kopf.on.event(GROUP, VERSION, FINETUNES, registry=registry)
    async def finetune_changed(body: kopf.Body, type: str | None, logger: kopf.Logger,
                               finetune_users: FinetuneUsers | None = None, **_: Any) -> None:
        namespace, name = body["metadata"].get("namespace"), body["metadata"].get("name")
        # Kopf's listings after a quiet spell repeat every fine-tune unchanged: only a change counts.
        if context.kube is None or not served(namespace) or not seen.changed(body, type) or finetune_users is None:
            return
        # A deployment of one fine-tune cares only about it going away or ending (a new LoRA, a
        # failure), not about every progress update of a running one; a set cares about a fine-tune
        # moving in or out of it (phase, labels, deletion), which needs_refresh tells from its status,
        # read fresh (sets are few: each is one pod fleet serving many fine-tunes).
        ended = type == "DELETED" or is_terminal(body.get("status"))
        users = sorted(finetune_users.get((str(namespace), str(name)), ())) if ended else []
        for set_name in sorted(finetune_users.get((str(namespace), None), ())):
            try:
                found = await context.api.read_custom(GROUP, VERSION, DEPLOYMENTS, str(namespace), set_name)
            except KubeApiError as exc:
                logger.warning(f"cannot read SDXLDeployment {set_name} yet: {exc}")
                continue
            if found is not None and is_settled(found) and needs_refresh(found, body, deleted=type == "DELETED"):
                users.append(set_name)
        for user in users:
            refresher.request(str(namespace), user)

    return refresher


async def refresh_deployment(namespace: str, name: str, context: OperatorContext, locks: CompileLocks) -> None:
    """Recompute and write the status of SDXLDeployment ``namespace/name`` now (a child or its fine-tune
    changed)."""
    if context.kube is None or is_reserved(namespace, context.settings.reserved_namespaces):
        return  # the operator is stopping (its API client is closed), or not ours to serve
    found = await context.api.read_custom(GROUP, VERSION, DEPLOYMENTS, namespace, name)
    if found is None or (found.get("metadata") or {}).get("deletionTimestamp"):
        return
    body = kopf.Body(cast(kopf.RawBody, found))
    logger = kopf.LocalObjectLogger(body=body, settings=kopf.OperatorSettings())
    try:
        patch = kopf.Patch()
        await reconcile(body, patch, logger, context, locks, full=False)
        if patch.get("status"):
            await context.api.patch_custom_status(GROUP, VERSION, DEPLOYMENTS, namespace, name,
                                                  {"status": patch["status"]})
    except (KubeApiError, kopf.TemporaryError, kopf.PermanentError) as exc:
        if isinstance(exc, KubeApiError) or isinstance(exc.__cause__, KubeApiError):
            raise  # an API error: the refresher tries again shortly (a Ready deployment has no ticks)
        logger.warning(f"cannot refresh SDXLDeployment {name} yet: {exc}")
