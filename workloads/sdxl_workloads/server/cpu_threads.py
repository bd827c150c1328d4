"""How many threads torch should use on CPU: the CPUs this container may actually use.

torch sizes its pool from the host's cores and ignores a container's CPU limit, so a pod limited
to 4 CPUs on a 64-core node runs 32 threads that the CFS quota throttles in turn; every step
then waits for the slowest, preempted thread. On a busy 2-core machine 4 denoising steps of the
`mid` model took 11-45 s with 2 threads and 2.5 s with 1 (bench/serve_overhead.py's notes).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

CGROUP_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")  # cgroup v2: "<quota> <period>" or "max <period>"


def cgroup_cpu_limit(cpu_max: Path = CGROUP_CPU_MAX) -> float | None:
    try:
        quota, period = cpu_max.read_text().split()[:2]
    except (OSError, ValueError):
        return None
    if quota == "max":
        return None
    try:
        return int(quota) / int(period)
    except (ValueError, ZeroDivisionError):
        return None


def cpu_budget(cpu_max: Path = CGROUP_CPU_MAX) -> int:
    """CPUs this process may use: its affinity mask, capped by a cgroup quota, at least 1."""
    try:
        available = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        available = os.cpu_count() or 1
    limit = cgroup_cpu_limit(cpu_max)
    if limit is not None:
        available = min(available, max(1, math.floor(limit)))
    return max(1, available)


def configure_torch_threads() -> int:
    """Size torch's CPU pool to the budget unless the user chose (OMP_NUM_THREADS); returns it."""
    import torch

    if not os.environ.get("OMP_NUM_THREADS"):
        torch.set_num_threads(cpu_budget())
    return int(torch.get_num_threads())
