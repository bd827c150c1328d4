"""The API group, version and plurals of the two custom resources, as the CRDs in the chart define them."""

from __future__ import annotations

GROUP = "sdxl.io"
VERSION = "v1alpha1"
FINETUNES = "sdxlfinetunes"
DEPLOYMENTS = "sdxldeployments"
