"""What all handlers share: the settings, the API client made at start-up, the metrics, and the clock."""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Callable

from sdxl_operator.core.settings import OperatorSettings
from sdxl_operator.handlers.kube_api import KubeApi
from sdxl_operator.handlers.operator_metrics import OperatorMetrics


def utc_now() -> datetime.datetime:
    return datetime.datetime.now(tz=datetime.timezone.utc)


@dataclasses.dataclass
class OperatorContext:
    """Handler dependencies, passed explicitly (no module globals) so tests can run several operators."""

    settings: OperatorSettings
    kube: KubeApi | None = None
    clock: Callable[[], datetime.datetime] = utc_now
    metrics: OperatorMetrics = dataclasses.field(default_factory=OperatorMetrics)

    @property
    def api(self) -> KubeApi:
        if self.kube is None:
            raise RuntimeError("the Kubernetes API client is created when the operator logs in")
        return self.kube
