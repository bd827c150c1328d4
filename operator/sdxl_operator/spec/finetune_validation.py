"""Validation of an SDXLFineTune spec: the CRD's schema and CEL rules, evaluated by the operator.

The API server enforces the CRD on a real cluster; the operator checks again because objects can
reach it without that (an older CRD, the sandbox's emulator, a CRD installed without validation),
and a bad spec must end as phase Failed / InvalidSpec with a message naming the field, never as a
Job that crashes. The checks are the CRD's own (:mod:`sdxl_contract.schema`), so the operator, the
workloads and the API server refuse the same specs. What a CRD cannot say (URIs against the tenant's
store prefix, the administrator's policy) is checked where that knowledge lives (:mod:`admin_policy`, :mod:`store_tenancy`).
"""

from __future__ import annotations

from collections.abc import Mapping

from sdxl_contract.finetune_spec import FineTuneSpec
from sdxl_contract.spec_building import InvalidSpec


def validate_finetune_spec(spec: object) -> list[str]:
    """All problems with ``spec`` as ``spec.<field>: <what is wrong>`` messages; empty when valid."""
    if not isinstance(spec, Mapping):
        return ["spec: must be an object with at least instanceImages and instancePrompt"]
    try:
        FineTuneSpec.from_dict(spec)
    except InvalidSpec as invalid:
        return [error.text for error in invalid.errors]
    return []
