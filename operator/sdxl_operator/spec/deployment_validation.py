"""Validation of an SDXLDeployment spec: the CRD's schema and CEL rules, evaluated by the operator.

As for fine-tunes (:mod:`finetune_validation`), the operator checks again what the API server
enforces, so a bad spec ends as phase Failed / InvalidSpec naming the field rather than as a compile
Job that crashes. The checks are the CRD's own (:mod:`sdxl_contract.schema`): a field added to the CRD
is validated here without a change. Whether the named fine-tune exists and has succeeded is a question
about another object, which no CRD can ask (:mod:`model_source`).
"""

from __future__ import annotations

from collections.abc import Mapping

from sdxl_contract.deployment_spec import DeploymentSpec
from sdxl_contract.spec_building import InvalidSpec

KIND = "SDXLDeployment"


def validate_deployment_spec(spec: object) -> list[str]:
    """All problems with ``spec`` as ``spec.<field>: <what is wrong>`` messages; empty when valid."""
    if not isinstance(spec, Mapping):
        return ["spec: must be an object with fineTune (or lora and baseModel)"]
    try:
        DeploymentSpec.from_dict(spec)
    except InvalidSpec as invalid:
        return [error.text for error in invalid.errors]
    return []
