"""The compile and serve workloads' entry to the typed SDXLDeployment spec, which lives in the contract.

:class:`sdxl_contract.deployment_spec.DeploymentSpec` is checked and defaulted by the CRD, so the
workloads refuse what the API server and the operator refuse; here a refusal becomes the workload
protocol's ``InvalidInput`` failure, with the CRD's message naming the field.
"""

from __future__ import annotations

from collections.abc import Mapping

from sdxl_contract.deployment_spec import DeploymentSpec, NeuronSettings
from sdxl_contract.spec_building import InvalidSpec
from sdxl_workloads.protocol import WorkloadError

__all__ = ["DeploymentSpec", "NeuronSettings", "load_deployment_spec"]


def load_deployment_spec(data: object) -> DeploymentSpec:
    """The typed spec of a camelCase spec dict; raises WorkloadError("InvalidInput", "spec.<field>: ...").

    The operator's resolved spec carries ``metadata: {name, namespace, uid}`` beside the spec's fields;
    it names the object, it is not part of the spec.
    """
    if isinstance(data, Mapping):
        data = {key: value for key, value in data.items() if key != "metadata"}
    try:
        return DeploymentSpec.from_dict(data)
    except InvalidSpec as err:
        raise WorkloadError("InvalidInput", str(err)) from err
