"""The operator Deployment's arguments are ones `sdxl-operator run` accepts and mean what the values say."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

VALUE_SETS: dict[str, dict[str, Any]] = {
    "default": {},
    "namespaced": {"watchNamespaces": ["team-a", "team-b"]},
    "debug-json": {"operator": {"logLevel": "debug", "logFormat": "json"}},
    "quiet-plain": {"watchNamespaces": ["ml"], "operator": {"logLevel": "quiet", "logFormat": "plain"}},
}


def _args(deployment: dict[str, Any]) -> list[str]:
    return list(deployment["spec"]["template"]["spec"]["containers"][0]["args"])


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_operator_cli_accepts_the_rendered_arguments(render: Callable[..., Any], value_set: str) -> None:
    """The Deployment's args parse with `sdxl-operator`'s own parser into the intended run."""
    from sdxl_operator.cli import build_parser

    values = VALUE_SETS[value_set]
    args = build_parser().parse_args(_args(render(values).one("Deployment")))
    assert args.command == "run"
    # The replicas peer through the chart's peering object (named as the release) instead of standalone.
    assert args.standalone is False
    assert args.peering_name == "sdxl-sdxl-operator"
    assert args.priority is None  # each replica takes its start time (sdxl_operator.core.peering_priority)
    assert args.liveness_endpoint == "http://0.0.0.0:8080/healthz"
    assert args.metrics_port == 9090
    assert args.namespaces == values.get("watchNamespaces", [])
    assert args.all_namespaces is not bool(args.namespaces)
    assert args.log_format == values.get("operator", {}).get("logFormat", "full")
    level = values.get("operator", {}).get("logLevel", "info")
    assert (args.quiet, args.verbose, args.debug) == (level == "quiet", level == "verbose", level == "debug")
