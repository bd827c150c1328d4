"""Creating a child object from a handler, and whether a failure is permanent or worth a retry."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import kopf

from sdxl_operator.kube_api import KubeApi, KubeApiError

# How long Kopf waits before retrying a handler after a temporary API failure.
RETRY_DELAY_SECONDS = 10.0


def handler_error(exc: KubeApiError) -> kopf.PermanentError | kopf.TemporaryError:
    """A 4xx answer means the manifest is wrong and retrying cannot help, except 403 (RBAC may be
    fixed while we wait) and 429 (throttled); anything else (5xx, no answer) is retried."""
    if exc.status is not None and 400 <= exc.status < 500 and exc.status not in (403, 429):
        return kopf.PermanentError(str(exc))
    return kopf.TemporaryError(str(exc), delay=RETRY_DELAY_SECONDS)


async def create_child(api: KubeApi, manifest: Mapping[str, Any], logger: kopf.Logger) -> None:
    """Create ``manifest``; one that already exists (a retried handler, a restart) is fine."""
    try:
        created = await api.create(manifest)
    except KubeApiError as exc:
        raise handler_error(exc) from exc
    what = f"{manifest['kind']} {manifest['metadata']['name']}"
    if created:
        logger.info(f"created {what}")
    else:
        logger.debug(f"found existing {what}")
