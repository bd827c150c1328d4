"""The chart's ServiceMonitor selects the Service the operator builds for an SDXLDeployment and
scrapes its named port (the builder is the operator's own, not a copy)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sdxl_operator.manifests.inference_service import build_inference_service

OWNER = {
    "apiVersion": "sdxl.io/v1alpha1",
    "kind": "SDXLDeployment",
    "metadata": {"name": "portraits", "namespace": "team-a", "uid": "0b4f6a3e-1c2d-4e5f-8a9b-0c1d2e3f4a5b"},
    "spec": {"fineTune": "portraits", "accelerator": "neuron"},
}


def test_service_monitor_scrapes_the_inference_service(render: Callable[..., Any]) -> None:
    monitors = render({"watchNamespaces": ["team-a"], "serviceMonitor": {"enabled": True}}).of_kind("ServiceMonitor")
    [monitor] = [m for m in monitors if m["metadata"]["name"].endswith("-servers")]
    service = build_inference_service(OWNER)
    service_labels = service["metadata"]["labels"]
    unmatched = {k: v for k, v in monitor["spec"]["selector"]["matchLabels"].items() if service_labels.get(k) != v}
    assert unmatched == {}, f"the ServiceMonitor's selector misses the Service's labels {service_labels}"
    assert OWNER["metadata"]["namespace"] in monitor["spec"]["namespaceSelector"]["matchNames"]
    port_names = {port["name"] for port in service["spec"]["ports"]}
    assert {endpoint["port"] for endpoint in monitor["spec"]["endpoints"]} <= port_names
