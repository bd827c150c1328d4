"""The labels every child object carries (see DESIGN.md "Names").

``app.kubernetes.io/*`` follow Kubernetes' recommended labels; ``sdxl.io/finetune`` /
``sdxl.io/deployment`` point back to the custom resource so ``kubectl get pods -l`` finds its pods.
"""

from __future__ import annotations

from sdxl_operator.core.naming import label_value

MANAGED_BY_KEY = "app.kubernetes.io/managed-by"
MANAGED_BY = "sdxl-operator"
NAME_KEY = "app.kubernetes.io/name"
INSTANCE_KEY = "app.kubernetes.io/instance"
FINETUNE_KEY = "sdxl.io/finetune"
DEPLOYMENT_KEY = "sdxl.io/deployment"
# On compile Jobs (and their ConfigMaps and pods): the compile key, so any SDXLDeployment with the same
# key finds a compile that is running or done. A label value holds at most 63 characters; the key has
# 64, so the label carries its first 63 and the full key is in the annotation of the same name.
COMPILE_KEY = "sdxl.io/compile-key"
COMPILE_KEY_LABEL_LENGTH = 63
# On compile Jobs and the inference pod template: the compiled artifact's URI beside its compile key.
ARTIFACT_ANNOTATION = "sdxl.io/compiled-artifact"

TRAINER = "sdxl-trainer"
COMPILER = "sdxl-compiler"
SERVER = "sdxl-server"

# Set by the Job controller on the pods of a Job (Kubernetes 1.27+; also as ``job-name``).
JOB_NAME_KEY = "batch.kubernetes.io/job-name"


def finetune_labels(finetune: str) -> dict[str, str]:
    """Labels of the children (ConfigMap, Job, pods) of an SDXLFineTune."""
    return {
        MANAGED_BY_KEY: MANAGED_BY,
        NAME_KEY: TRAINER,
        INSTANCE_KEY: label_value(finetune),
        FINETUNE_KEY: label_value(finetune),
    }


def deployment_labels(deployment: str, app_name: str) -> dict[str, str]:
    """Labels of the children of an SDXLDeployment; ``app_name`` is COMPILER or SERVER."""
    if app_name not in (COMPILER, SERVER):
        raise ValueError(f"app_name must be {COMPILER!r} or {SERVER!r}, got {app_name!r}")
    return {
        MANAGED_BY_KEY: MANAGED_BY,
        NAME_KEY: app_name,
        INSTANCE_KEY: label_value(deployment),
        DEPLOYMENT_KEY: label_value(deployment),
    }


def compile_key_label(key: str) -> str:
    """The value of the ``sdxl.io/compile-key`` label for ``key``."""
    return key[:COMPILE_KEY_LABEL_LENGTH]


def compile_labels(deployment: str, key: str) -> dict[str, str]:
    """Labels of a compile Job, its ConfigMap and pods: the deployment's plus the compile key."""
    return {**deployment_labels(deployment, COMPILER), COMPILE_KEY: compile_key_label(key)}


def compile_annotations(key: str, artifact: str) -> dict[str, str]:
    """Annotations of a compile Job and of the pod template that serves its artifact."""
    return {COMPILE_KEY: key, ARTIFACT_ANNOTATION: artifact}


def selector(labels: dict[str, str]) -> str:
    """A label selector string (``k=v,k2=v2``) matching all of ``labels``."""
    return ",".join(f"{key}={value}" for key, value in sorted(labels.items()))


def job_pods_selector(job_name: str) -> str:
    """The selector of the pods the Job controller created for ``job_name``."""
    return f"{JOB_NAME_KEY}={label_value(job_name)}"
