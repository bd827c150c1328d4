"""A spec file checked against its CRD before a workload reads it: the API server's verdict, offline.

The workloads accept a spec that never went through the API server (a local manifest, an older
operator's ConfigMap), so they ask the CRD itself (:mod:`sdxl_contract.schema`) and refuse what the
API server and the operator refuse, with the same message naming the field.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sdxl_contract.schema import spec_errors
from sdxl_workloads.protocol import WorkloadError


def check_against_crd(kind: str, spec: Mapping[str, Any]) -> None:
    """Raise WorkloadError("InvalidInput", "<first problem>") when the CRD of ``kind`` refuses ``spec``."""
    errors = spec_errors(kind, dict(spec))
    if errors:
        more = f" (and {len(errors) - 1} more problem(s): {'; '.join(e.text for e in errors[1:3])})" if len(errors) > 1 else ""
        raise WorkloadError("InvalidInput", f"{errors[0].text}{more}")
