"""Where the operator puts a workload's inputs and where it reads the workload's result.

* Input: the resolved spec as JSON at :data:`SPEC_PATH` (a ConfigMap volume); ``pvc://claim/path``
  URIs at ``<PVC_ROOT>/<claim>/path`` (the claim mounted there), the root also given as
  :data:`PVC_ROOT_ENV`.
* Progress: one JSON object per line on stdout (``{"event": "progress", ...}``).
* Result: one JSON object in the termination message, at :data:`TERMINATION_LOG_PATH` (also given as
  :data:`TERMINATION_LOG_ENV`), at most :data:`TERMINATION_MESSAGE_LIMIT` bytes, the kubelet's limit:
  ``{"status": "Succeeded", "artifacts": {...}, "metrics": {...}}`` (keys in
  :mod:`sdxl_contract.artifact_keys`) or ``{"status": "Failed", "reason": ..., "message": ...}``
  (reasons in :mod:`sdxl_contract.failure_reasons`, exit codes in :mod:`sdxl_contract.exit_codes`).
"""

from __future__ import annotations

SPEC_DIR = "/etc/sdxl"
SPEC_FILE = "spec.json"
SPEC_PATH = f"{SPEC_DIR}/{SPEC_FILE}"

PVC_ROOT = "/mnt/pvc"

# Where the kubelet reads the termination message from (the pod's terminationMessagePath).
TERMINATION_LOG_PATH = "/dev/termination-log"
# The kubelet keeps at most 4096 bytes of a termination message.
TERMINATION_MESSAGE_LIMIT = 4096

# Environment variables the operator sets in every workload container.
TERMINATION_LOG_ENV = "SDXL_TERMINATION_LOG"  # where the result goes
PVC_ROOT_ENV = "SDXL_PVC_ROOT"  # where claims are mounted
CACHE_DIR_ENV = "SDXL_CACHE_DIR"  # a writable cache (embedded models, S3 downloads)

# The ``event`` of a progress line: ``{"event": "progress", "step": 120, "totalSteps": 500, "loss": 0.113,
# "etaSeconds": 310}``; the operator shows the last one as ``status.progress``.
PROGRESS_EVENT = "progress"
# Its fields, which are also the keys of ``status.progress``.
PROGRESS_STEP = "step"
PROGRESS_TOTAL_STEPS = "totalSteps"
PROGRESS_LOSS = "loss"
PROGRESS_ETA_SECONDS = "etaSeconds"

# Result statuses.
SUCCEEDED = "Succeeded"
FAILED = "Failed"
