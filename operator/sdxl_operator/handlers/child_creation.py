"""Creating a child object from a handler, and what a failure means.

* Created, or already there *and controlled by this resource* (a retried handler, a restart): fine.
* Already there but not this resource's (HTTP 409 and another controller, or none): the object is
  left alone and :class:`~sdxl_operator.handlers.child_ownership.NameConflict` is raised.
* Refused by the API server (a 4xx other than 403, 409 and 429: an invalid field, an admission webhook,
  a quota on the object): :class:`ChildRejected` with the server's own message. Retrying cannot help,
  so the resource fails with reason ``Rejected`` instead of waiting in its phase forever.
* Anything else (no answer, 5xx, 403 while RBAC is fixed, 429 throttling) stays a
  :class:`~sdxl_operator.handlers.kube_api.KubeApiError` for the caller to retry.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import kopf

from sdxl_contract.failure_reasons import FailureReason
from sdxl_operator.handlers.child_ownership import require_controlled
from sdxl_operator.handlers.kube_api import KubeApi, KubeApiError

# How long Kopf waits before retrying a handler after a temporary API failure.
RETRY_DELAY_SECONDS = 10.0
_RETRYABLE_CLIENT_ERRORS = (403, 409, 429)


class ChildRejected(Exception):
    """The API server refused a child object; the message quotes it."""

    reason = FailureReason.REJECTED

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def is_refusal(exc: KubeApiError) -> bool:
    """A 4xx answer that retrying cannot change (see the module docstring)."""
    return exc.status is not None and 400 <= exc.status < 500 and exc.status not in _RETRYABLE_CLIENT_ERRORS


def refusal(exc: KubeApiError) -> ChildRejected:
    return ChildRejected(f"the API server refused it: {exc}. Fix what the message names (the custom resource's "
                         "spec, or the namespace's admission policy or quota); the operator tries again when the "
                         "spec changes")


def handler_error(exc: KubeApiError) -> kopf.PermanentError | kopf.TemporaryError:
    """A refusal is permanent; anything else (5xx, no answer, 403 while RBAC is fixed, 429) is retried."""
    if is_refusal(exc):
        return kopf.PermanentError(str(exc))
    return kopf.TemporaryError(str(exc), delay=RETRY_DELAY_SECONDS)


async def create_child(api: KubeApi, manifest: Mapping[str, Any], owner: Mapping[str, Any],
                       logger: kopf.Logger) -> dict[str, Any] | None:
    """Create ``manifest`` for ``owner``; returns the object that was already there (this owner's), else None.

    Raises NameConflict, ChildRejected, or KubeApiError for a temporary failure.
    """
    kind, meta = str(manifest["kind"]), manifest["metadata"]
    try:
        created = await api.create(manifest)
    except KubeApiError as exc:
        if is_refusal(exc):
            raise refusal(exc) from exc
        raise
    what = f"{kind} {meta['name']}"
    if created:
        logger.info(f"created {what}")
        return None
    existing = await api.read(kind, meta["namespace"], meta["name"])
    if existing is None:
        raise KubeApiError(f"{what} answered 'already exists' but is gone now (being deleted?); trying again", None)
    require_controlled(existing, owner, kind)
    logger.debug(f"found existing {what}")
    return existing
