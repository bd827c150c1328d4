"""How long Kopf keeps an idle per-object worker: shorter than its default, to hold fewer bodies.

Kopf runs one worker task per object that has events to process, for every watched kind (the two
custom resources and the seven child kinds of :mod:`child_watch`). An idle worker stays
``settings.queueing.idle_timeout`` seconds (5 by default) and keeps the last event's parsed body
meanwhile. A burst of events (many SDXLDeployments applied at once, or the listing of every child
when the operator starts) then keeps a body alive for every object of the burst at the same moment,
and Python keeps the memory of such a peak: the small objects that outlive it are scattered over the
allocator's pools, which stay mapped (bench/README.md, "The operator at rest", "Memory").

Kopf's ``worker_limit`` would bound the peak further, but Kopf sleeps inside the worker while a
handler waits for its retry (``kopf.TemporaryError(delay=...)``): more waiting objects of one kind
than the limit would hold every slot and starve the others. It stays unlimited.
"""

from __future__ import annotations

import kopf

# Measured with bench/operator_at_rest.py on the emulator, 300 SDXLDeployments + 60 SDXLFineTunes:
# peak RSS 161-163 MB with 0.5 s against 165-167 MB with Kopf's 5 s. A later event of the same object
# starts a new worker, which costs less than keeping an idle one with its body for every object.
WORKER_IDLE_SECONDS = 0.5


def release_idle_workers_soon(settings: kopf.OperatorSettings) -> None:
    """Let a per-object worker with no events exit after :data:`WORKER_IDLE_SECONDS`."""
    settings.queueing.idle_timeout = WORKER_IDLE_SECONDS
