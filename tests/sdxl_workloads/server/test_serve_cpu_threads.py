"""torch's CPU thread count follows the container's CPU limit, not the host's cores."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from sdxl_workloads.server.cpu_threads import cgroup_cpu_limit, cpu_budget

pytestmark = pytest.mark.compat


@pytest.mark.parametrize(("content", "expected"), [
    ("400000 100000\n", 4.0),
    ("150000 100000\n", 1.5),
    ("max 100000\n", None),
    ("garbage\n", None),
    ("", None),
])
def test_cgroup_cpu_limit(tmp_path: Path, content: str, expected: float | None) -> None:
    cpu_max = tmp_path / "cpu.max"
    cpu_max.write_text(content)
    assert cgroup_cpu_limit(cpu_max) == expected


def test_budget_is_capped_by_the_quota_and_never_zero(tmp_path: Path) -> None:
    affinity = len(os.sched_getaffinity(0))
    cpu_max = tmp_path / "cpu.max"
    assert cpu_budget(tmp_path / "absent") == affinity
    cpu_max.write_text("50000 100000\n")  # half a CPU
    assert cpu_budget(cpu_max) == 1
    cpu_max.write_text(f"{(affinity + 8) * 100000} 100000\n")  # a quota above the cores we have
    assert cpu_budget(cpu_max) == affinity
    cpu_max.write_text("100000 100000\n")
    assert cpu_budget(cpu_max) == 1
