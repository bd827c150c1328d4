"""The ``sdxl-operator`` console script.

``sdxl-operator run`` starts the operator: a thin wrapper over Kopf's ``kopf run`` that takes the
same options (``--namespace/-n`` repeatable, ``--all-namespaces/-A``, ``--standalone``,
``--priority``, ``--peering``, ``--liveness``, ``--verbose``, ``--debug``, ``--quiet``,
``--log-format``) and runs our handlers (:func:`operator_registry.build_registry`). It finds the
cluster as kubectl does: the in-cluster service account, else the kubeconfig's current context.
With ``--peering`` and no ``--priority``, the replica takes the priority of its start time
(:mod:`peering_priority`): the newest replica is the active one. ``--metrics-port`` serves the
operator's Prometheus metrics. ``--resync-interval`` sets how often a slow safety-net LIST of the
operator's children catches a change its watches missed (:mod:`child_resync`; 0 turns it off).

``sdxl-operator sandbox ...`` runs the local sandbox (``sdxl_sandbox.command.main``). The sandbox is a
separate package that the operator image does not contain and the operator never imports (an
import-linter contract): it is looked up by name only when asked for, and a clear message says how to
get it where it is absent.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from sdxl_operator.core.peering_priority import replica_priority
from sdxl_operator.core.settings import OperatorSettings, SettingsError

# A name, not an import: the sandbox is a development tool outside the operator image.
SANDBOX_MODULE = "sdxl_sandbox.command"


def build_parser() -> argparse.ArgumentParser:
    # Imported here: it brings Kopf, which `sdxl-operator sandbox` does not need.
    from sdxl_operator.handlers.child_resync import DEFAULT_RESYNC_SECONDS

    parser = argparse.ArgumentParser(prog="sdxl-operator", description="SDXL fine-tuning and serving operator.")
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="run the operator (Kopf) against the current cluster")
    scope = run.add_mutually_exclusive_group()
    scope.add_argument("-n", "--namespace", dest="namespaces", action="append", default=[], metavar="NS",
                       help="serve this namespace (repeatable; Kopf globs such as 'team-*' work)")
    scope.add_argument("-A", "--all-namespaces", dest="all_namespaces", action="store_true",
                       help="serve all namespaces (the default when no --namespace is given)")
    run.add_argument("--standalone", action="store_true", help="do not coordinate with other operator replicas")
    run.add_argument("--priority", type=int, default=None,
                     help="peering priority of this replica (default with --peering: its start time, newest wins)")
    run.add_argument("--peering", dest="peering_name", default=None, help="name of the peering object")
    run.add_argument("--metrics-port", type=int, default=None, metavar="PORT",
                     help="serve the operator's Prometheus metrics on this port (/metrics)")
    run.add_argument("--resync-interval", type=float, default=DEFAULT_RESYNC_SECONDS, metavar="SECONDS",
                     help="list the operator's children this often to catch a change a watch missed "
                          f"(default {DEFAULT_RESYNC_SECONDS:g}; 0 turns it off)")
    run.add_argument("--liveness", dest="liveness_endpoint", default=None, metavar="URL",
                     help="serve a liveness probe, e.g. http://0.0.0.0:8080/healthz")
    run.add_argument("-v", "--verbose", action="store_true", help="log more")
    run.add_argument("-d", "--debug", action="store_true", help="log everything")
    run.add_argument("-q", "--quiet", action="store_true", help="log only warnings and errors")
    run.add_argument("--log-format", choices=("plain", "full", "json"), default="full")

    sandbox = commands.add_parser("sandbox", help="run the whole product locally (development tool)",
                                  add_help=False)
    sandbox.add_argument("sandbox_args", nargs=argparse.REMAINDER)
    return parser


def run_operator(args: argparse.Namespace) -> int:
    import kopf

    from sdxl_operator.handlers.operator_registry import build_registry

    try:
        settings = OperatorSettings.from_env()
    except SettingsError as exc:
        print(f"sdxl-operator: bad setting: {exc}. Fix it in the operator's environment (with the Helm chart: "
              "its values) and start the operator again.", file=sys.stderr)
        return 2
    log_format = {"plain": kopf.LogFormat.PLAIN, "full": kopf.LogFormat.FULL, "json": kopf.LogFormat.JSON}
    kopf.configure(verbose=args.verbose, debug=args.debug, quiet=args.quiet, log_format=log_format[args.log_format])
    priority = args.priority
    if priority is None and args.peering_name and not args.standalone:
        priority = replica_priority()
    kopf.run(
        registry=build_registry(settings, metrics_port=args.metrics_port, namespaces=args.namespaces,
                                resync_seconds=args.resync_interval),
        clusterwide=not args.namespaces,
        namespaces=args.namespaces,
        standalone=args.standalone or None,
        priority=priority,
        peering_name=args.peering_name,
        liveness_endpoint=args.liveness_endpoint,
    )
    return 0


def run_sandbox(argv: Sequence[str]) -> int:
    try:
        module = importlib.import_module(SANDBOX_MODULE)
    except ImportError as exc:
        print(f"sdxl-operator sandbox: unavailable ({exc}). The sandbox is a development tool: "
              "pip install 'sdxl-operator[dev]' from a checkout.", file=sys.stderr)
        return 2
    return int(module.main(list(argv)))


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments[:1] == ["sandbox"]:
        return run_sandbox(arguments[1:])
    args = build_parser().parse_args(arguments)
    return run_operator(args)


if __name__ == "__main__":
    sys.exit(main())
