"""The inference server's Prometheus gauges that autoscaling reads, and the spec metric each one serves.

The server exports them on ``/metrics`` (per pod); the operator names them in the
HorizontalPodAutoscaler's Pods metrics and in KEDA's Prometheus query, and the README's Prometheus
adapter rule serves them under these names. One home, so a renamed gauge cannot leave the autoscaler
reading a series nobody writes.
"""

from __future__ import annotations

QUEUE_DEPTH = "sdxl_queue_depth"  # requests admitted and waiting for the model
IN_FLIGHT = "sdxl_requests_in_flight"  # requests admitted and not yet answered (waiting or generating)

# spec.autoscaling.metric -> the gauge it scales on (cpu is the kubelet's, not the server's).
AUTOSCALING_GAUGES: dict[str, str] = {"queueDepth": QUEUE_DEPTH, "inFlight": IN_FLIGHT}
