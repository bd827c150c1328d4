"""The status of an SDXLDeployment, computed from what the controller read. Pure (``now`` passed in).

Phases:

* ``Pending`` — waiting for the fine-tune (condition FineTuneReady=False: FineTuneNotFound,
  FineTunePending, FineTuneTraining).
* ``Compiling`` — the compile (Neuron) or prepare (GPU/CPU) Job for the current compile key runs.
  A stuck compile pod (Unschedulable, ImagePullFailed) shows in ``failure`` meanwhile.
* ``Deploying`` — the model is compiled; the Deployment is not yet rolled out to it and available.
  Crash-looping, unschedulable or unpullable server pods show in ``failure`` meanwhile.
* ``Ready`` — the Deployment runs the current artifact on every pod and serves (or is scaled to 0).
* ``Failed`` — invalid spec, failed fine-tune, or failed compile. An older artifact may still be
  served (``liveArtifact``, condition Available) while a new key's compile failed.

``compileKey``/``compiledArtifact``/``compileJob`` describe the newest model the spec asks for;
``liveArtifact`` is the model every server pod runs (it changes when a rollout completes). When the
fine-tune disappears after its model was compiled, the deployment keeps its compile fields and goes
on serving: condition FineTuneReady says so, the phase does not fall back to Pending.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Mapping, Sequence
from typing import Any

from sdxl_contract.failure_reasons import FailureReason
from sdxl_operator.core.labels import ARTIFACT_ANNOTATION, COMPILE_KEY
from sdxl_operator.spec.model_source import FineTuneWait, ModelSource
from sdxl_operator.status.compile_outcome import CompileDone, CompileFailed, CompileOutcome, CompileRunning
from sdxl_operator.status.conditions import TRUE, find_condition, make_condition, merge_conditions
from sdxl_operator.status.failure_record import failure_record
from sdxl_operator.status.pod_problems import PodProblem, deployment_problem, diagnose_pod
from sdxl_operator.status.status_message import head_of

PENDING = "Pending"
COMPILING = "Compiling"
DEPLOYING = "Deploying"
READY = "Ready"
FAILED = "Failed"


@dataclasses.dataclass(frozen=True)
class CompileView:
    """The compile the spec asks for: its key, the Job followed (own or shared) and its outcome."""

    key: str
    job_name: str | None
    outcome: CompileOutcome


@dataclasses.dataclass(frozen=True)
class DeploymentObservation:
    """Everything the status is computed from."""

    generation: int
    now: datetime.datetime
    previous: Mapping[str, Any]
    source: ModelSource | FineTuneWait
    compile: CompileView | None  # None while waiting for the fine-tune
    deployment: Mapping[str, Any] | None  # the inference Deployment as read
    server_pods: Sequence[Mapping[str, Any]]
    url: str
    pending_grace_seconds: float
    # The server pods' label selector, as a string: the scale subresource's labelSelectorPath, which an
    # HPA or KEDA needs to find the pods of an SDXLDeployment it scales.
    selector: str = ""


def served_artifact(deployment: Mapping[str, Any] | None) -> tuple[str | None, str | None]:
    """(compile key, artifact) in a Deployment's pod template, or (None, None)."""
    if not deployment:
        return None, None
    annotations = (((deployment.get("spec") or {}).get("template") or {}).get("metadata") or {}).get(
        "annotations") or {}
    return annotations.get(COMPILE_KEY), annotations.get(ARTIFACT_ANNOTATION)


def is_settled(body: Mapping[str, Any]) -> bool:
    """Whether the status of an SDXLDeployment stays as it is until something it watches changes.

    Ready on the current generation (only its server Deployment can change that: the controller
    follows that Deployment's events), or Failed with InvalidSpec (only a spec change can fix it). Its
    status ticks stop then. Anything else (pending, compiling, deploying, a conflict or a failure the
    cluster may still resolve) is recomputed every status interval until it settles.
    """
    status = body.get("status") or {}
    generation = int((body.get("metadata") or {}).get("generation") or 1)
    if int(status.get("observedGeneration") or 0) != generation:
        return False
    if status.get("phase") == READY:
        return True
    return status.get("phase") == FAILED and (status.get("failure") or {}).get("reason") == \
        FailureReason.INVALID_SPEC.value


def invalid_spec_status(errors: Sequence[str], *, now: datetime.datetime, generation: int,
                        previous: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Failed / InvalidSpec; anything already served keeps being described."""
    return blocked_status(FailureReason.INVALID_SPEC, "; ".join(errors), now=now, generation=generation,
                          previous=previous)


def blocked_status(reason_of: FailureReason, message: str, *, now: datetime.datetime, generation: int,
                   previous: Mapping[str, Any] | None = None, selector: str | None = None) -> dict[str, Any]:
    """Failed with ``reason_of`` (an invalid spec, a NameConflict, a child the API server refused, a
    missing claim); anything already served keeps being described."""
    message = head_of(message)
    previous = previous or {}
    status = {key: previous[key] for key in ("compileKey", "compiledArtifact", "compileJob", "liveArtifact",
                                              "replicas", "readyReplicas", "url", "selector") if key in previous}
    if selector:
        status["selector"] = selector
    reason = reason_of.value
    status.update({
        "phase": FAILED,
        "observedGeneration": generation,
        "conditions": merge_conditions(previous.get("conditions"), [
            make_condition(READY, False, reason, message, now=now, generation=generation)]),
        "failure": _failure(reason, message, now, previous),
    })
    return status


def _failure(reason: str, message: str, now: datetime.datetime, previous: Mapping[str, Any],
             exit_code: int | None = None, time: str | None = None) -> dict[str, Any]:
    return failure_record(reason, head_of(message), now=now, previous=previous.get("failure"), exit_code=exit_code,
                          time=time)


def rollout_done(deployment: Mapping[str, Any]) -> bool:
    """Whether every pod of the Deployment runs its current template and is ready.

    The Deployment controller must have seen the current spec (``observedGeneration``), and
    ``replicas == updatedReplicas == readyReplicas`` (at least the wanted number): while an old
    replica still exists (``replicas > updatedReplicas``) the old model still answers requests, so
    the new one is not live yet.
    """
    meta, spec, status = deployment.get("metadata") or {}, deployment.get("spec") or {}, deployment.get("status") or {}
    replicas = int(status.get("replicas") or 0)
    wanted = int(spec["replicas"]) if isinstance(spec.get("replicas"), int) else replicas
    updated, ready = int(status.get("updatedReplicas") or 0), int(status.get("readyReplicas") or 0)
    available = int(status.get("availableReplicas") or 0)
    observed = int(status.get("observedGeneration") or 0) >= int(meta.get("generation") or 1)
    return observed and replicas == updated == ready and updated >= wanted and available >= updated


def _rollout(deployment: Mapping[str, Any]) -> tuple[bool, int, int, int, int]:
    """(rolled out, wanted, replicas, ready, available)."""
    spec, status = deployment.get("spec") or {}, deployment.get("status") or {}
    replicas = int(status.get("replicas") or 0)
    wanted = int(spec["replicas"]) if isinstance(spec.get("replicas"), int) else replicas
    ready, available = int(status.get("readyReplicas") or 0), int(status.get("availableReplicas") or 0)
    return rollout_done(deployment), wanted, replicas, ready, available


def compute_deployment_status(obs: DeploymentObservation) -> dict[str, Any]:
    """The new ``status`` (see the module docstring)."""
    previous, now, generation = obs.previous, obs.now, obs.generation
    status: dict[str, Any] = {"observedGeneration": generation}
    if obs.selector:
        status["selector"] = obs.selector
    updates: list[dict[str, Any]] = []

    def condition(type_: str, value: bool, reason: str, message: str) -> None:
        updates.append(make_condition(type_, value, reason, message, now=now, generation=generation))

    # --- the fine-tune
    source = obs.source
    if isinstance(source, ModelSource):
        if source.finetune:
            condition("FineTuneReady", True, "FineTuneSucceeded", f"LoRA of SDXLFineTune {source.finetune}: "
                      f"{source.lora}")
        else:
            condition("FineTuneReady", True, "LoRAGiven", f"LoRA from spec.lora: {source.lora}")
    else:
        condition("FineTuneReady", False, source.reason, source.message)

    # --- the compile: the spec's key, or (fine-tune gone after compiling) the one recorded before
    failure: dict[str, Any] | None = None
    compiled = False
    compile_running: CompileRunning | None = None
    compile_failed: CompileFailed | None = None
    if obs.compile is not None:
        view = obs.compile
        status["compileKey"] = view.key
        if view.job_name:
            status["compileJob"] = view.job_name
        outcome = view.outcome
        if isinstance(outcome, CompileDone):
            compiled = True
            status["compiledArtifact"] = outcome.artifact
            condition("Compiled", True, "CacheHit" if outcome.cache_hit else "Compiled",
                      f"compiled model at {outcome.artifact}")
        elif isinstance(outcome, CompileFailed):
            compile_failed = outcome
            condition("Compiled", False, outcome.reason.value, outcome.message)
            failure = _failure(outcome.reason.value, outcome.message, now, previous, outcome.exit_code, outcome.time)
        else:
            compile_running = outcome
            condition("Compiled", False, outcome.reason, outcome.detail)
            if outcome.problem is not None:
                failure = _failure(outcome.problem.reason.value, outcome.problem.message, now, previous)
    elif previous.get("compileKey") and previous.get("compiledArtifact") and \
            (find_condition(previous.get("conditions"), "Compiled") or {}).get("status") == TRUE:
        compiled = True
        for key in ("compileKey", "compiledArtifact", "compileJob"):
            if key in previous:
                status[key] = previous[key]
    else:
        condition("Compiled", False, "WaitingForFineTune", "nothing to compile until the fine-tune has succeeded")

    # --- serving
    live_key, live_artifact = served_artifact(obs.deployment)
    rolled_out = ready_to_serve = False
    available = 0
    if obs.deployment is not None:
        rolled_out, wanted, replicas, ready, available = _rollout(obs.deployment)
        status.update({"replicas": replicas, "readyReplicas": ready, "url": obs.url})
        if rolled_out and live_artifact:
            status["liveArtifact"] = live_artifact
        elif previous.get("liveArtifact"):
            status["liveArtifact"] = previous["liveArtifact"]
        ready_to_serve = rolled_out and (wanted == 0 or available > 0)
        if available > 0:
            condition("Available", True, "MinimumReplicasAvailable", f"{available} server pod(s) available")
        elif wanted == 0:
            condition("Available", False, "ScaledToZero", "spec.replicas is 0: no server pods")
        else:
            condition("Available", False, "NoServerReady", "no server pod is ready yet")
    else:
        condition("Available", False, "NoDeployment", "the inference Deployment does not exist yet")
    at_current = compiled and live_key is not None and live_key == status.get("compileKey")

    # --- phase
    if isinstance(source, FineTuneWait) and source.failed:
        phase = FAILED
        failure = _failure(source.reason, source.message, now, previous)
    elif compile_failed is not None:
        phase = FAILED
    elif compile_running is not None:
        phase = COMPILING
    elif not compiled:
        phase = PENDING
    elif at_current and ready_to_serve:
        phase = READY
    else:
        phase = DEPLOYING
        problem = deployment_problem(obs.deployment) if obs.deployment is not None else None
        problem = problem or _server_problem(obs, status.get("compileKey"))
        if problem is not None:
            failure = _failure(problem.reason.value, problem.message, now, previous)
    status["phase"] = phase

    if phase == READY:
        message = ("scaled to zero; the compiled model is kept" if available == 0
                   else f"serving {status.get('liveArtifact')} at {obs.url}")
        condition(READY, True, READY, message)
    elif failure is not None:
        condition(READY, False, failure["reason"], failure["message"])
    else:
        reason, message = {
            PENDING: ("WaitingForFineTune", "waiting for the fine-tune"),
            COMPILING: ("Compiling", "compiling the model" + (
                f"; {status['liveArtifact']} serves meanwhile" if status.get("liveArtifact") else "")),
            DEPLOYING: ("RollingOut", "starting server pods on the compiled model"),
        }[phase]
        condition(READY, False, reason, message)
    if failure is not None:
        status["failure"] = failure
    status["conditions"] = merge_conditions(previous.get("conditions"), updates)
    return status


def _server_problem(obs: DeploymentObservation, key: object) -> PodProblem | None:
    """The first stuck server pod running (or meant to run) the current key."""
    for pod in obs.server_pods:
        annotations = (pod.get("metadata") or {}).get("annotations") or {}
        if key and annotations.get(COMPILE_KEY) not in (None, key):
            continue
        diagnosis = diagnose_pod(pod, now=obs.now, pending_grace_seconds=obs.pending_grace_seconds)
        if isinstance(diagnosis, PodProblem):
            return diagnosis
    return None
