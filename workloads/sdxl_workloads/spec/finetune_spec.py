"""The trainer's entry to the typed fine-tune spec, which lives once in the contract package.

:class:`sdxl_contract.finetune_spec.FineTuneSpec` is checked and defaulted by the CRD; here a refusal
becomes the workload protocol's ``InvalidInput`` failure, with the CRD's message naming the field.
"""

from __future__ import annotations

from sdxl_contract.finetune_spec import FineTuneSpec, PriorPreservation, Resources, Training, Validation
from sdxl_contract.spec_building import InvalidSpec
from sdxl_workloads.protocol import WorkloadError

__all__ = ["FineTuneSpec", "PriorPreservation", "Resources", "Training", "Validation", "load_finetune_spec"]


def load_finetune_spec(data: object) -> FineTuneSpec:
    """The typed spec of a camelCase spec dict; raises WorkloadError("InvalidInput", "spec.<field>: ...")."""
    try:
        return FineTuneSpec.from_dict(data)
    except InvalidSpec as err:
        raise WorkloadError("InvalidInput", str(err)) from err
