"""`sdxl-workload`: the one entry point of every workload container.

This module imports no torch: the operator's contract tests parse Job arguments with
`parse_args` cheaply, and `--help` answers at once. Each subcommand lives in its own module
and is imported only when it runs.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import traceback
from collections.abc import Sequence

from sdxl_contract.exit_codes import exit_code_for
from sdxl_workloads import protocol

# subcommand -> module whose `run(args) -> int` carries it out
COMMANDS = {
    "train": "sdxl_workloads.train.train_command",
    "compile": "sdxl_workloads.compile.compile_command",
    "serve": "sdxl_workloads.server.serve_command",
    "tiny-model": "sdxl_workloads.builtin.tiny_model",
    "sample-images": "sdxl_workloads.builtin.sample_images",
}


def _termination_log(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--termination-log",
        metavar="PATH",
        help="where the result JSON goes (default: $SDXL_TERMINATION_LOG, else /dev/termination-log)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sdxl-workload",
        description="SDXL DreamBooth-LoRA training, compilation and serving workloads.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    train = sub.add_parser("train", help="fine-tune SDXL with DreamBooth + LoRA")
    train.add_argument("--spec", required=True, metavar="FILE",
                       help="an SDXLFineTune manifest, its bare spec, or the operator's resolved spec (YAML or JSON)")
    train.add_argument("--output", metavar="URI", help="where artifacts go; overrides spec.output")
    train.add_argument("--resume", metavar="latest|PATH",
                       help="continue from the newest checkpoint under the output ('latest') or from PATH")
    train.add_argument("--max-instance-images", type=int, metavar="N",
                       help="refuse a folder with more than N photos (the operator passes the cluster's limit; "
                            "default 1000)")
    _termination_log(train)

    compile_ = sub.add_parser(
        "compile",
        help="compile for Inferentia2 (accelerator neuron) or prepare a fused pipeline (nvidia, cpu)",
    )
    compile_.add_argument("--spec", required=True, metavar="FILE",
                          help="an SDXLDeployment manifest, its bare spec, or the operator's resolved spec: the "
                               "LoRA (spec.lora, spec.loraSha256), the base model and the compiler settings")
    compile_.add_argument("--store", required=True, metavar="URI",
                          help="artifact store; the result goes to <store>/compiled/<key>/")
    compile_.add_argument("--key", help="use this compile key instead of computing it (the operator passes it)")
    compile_.add_argument("--runtime-id", metavar="STR",
                          help="identifies the compiler runtime in the key (default: the installed library versions)")
    _termination_log(compile_)

    serve = sub.add_parser("serve", help="serve images over HTTP")
    serve.add_argument("--spec", required=True, metavar="FILE",
                       help="an SDXLDeployment manifest, its bare spec, or the operator's resolved spec: the "
                            "accelerator, the model and LoRA, batching, queue, timeout, auth, adapters")
    serve.add_argument("--model", metavar="URI",
                       help="the compiled or prepared folder to serve, which already holds the spec's LoRA (the "
                            "operator passes it); without it, the spec's baseModel with its lora (nvidia, cpu)")
    serve.add_argument("--host", default="0.0.0.0")
    serve.add_argument("--port", type=int, default=8080)
    serve.add_argument("--api-key-file", metavar="PATH",
                       help="the file holding the API key of spec.auth (the operator mounts the Secret's key there); "
                            "without spec.auth it requires this key all the same")
    serve.add_argument("--max-steps", type=int, default=150, help="most denoising steps one request may ask for")
    serve.add_argument("--max-images", type=int, default=8, help="most images one request may ask for")
    serve.add_argument("--adapters", metavar="FILE",
                       help='serve several fine-tunes: a JSON file {"adapters": {"<name>": "<LoRA URI>"}}, re-read '
                            "while serving; requests choose one by name (cpu and nvidia only; spec.adapters sets "
                            "how many stay in memory and the highest rank)")
    serve.add_argument("--adapters-refresh", type=float, default=10.0, metavar="SECONDS",
                       help="how often the --adapters file is re-read (default 10)")
    serve.add_argument("--compile-unet", action="store_true",
                       help="with --adapters: torch.compile the UNet once; adapters are hot-swapped without recompiling")
    _termination_log(serve)

    tiny = sub.add_parser("tiny-model", help="write the embedded SDXL-architecture test model")
    tiny.add_argument("out", metavar="OUT")
    tiny.add_argument("--size", choices=["tiny", "mid"], default="tiny")
    tiny.add_argument("--seed", type=int, default=0)

    sample = sub.add_parser("sample-images", help="write the embedded sample-subject photos")
    sample.add_argument("out", metavar="OUT")
    sample.add_argument("--seed", type=int, default=0)
    return parser


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    return build_parser().parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    module = importlib.import_module(COMMANDS[args.command])
    termination_log = getattr(args, "termination_log", None)
    try:
        return int(module.run(args))
    except protocol.WorkloadError as err:
        protocol.report_failure(err.reason, err.message, termination_log)
        return exit_code_for(err.reason)
    except KeyboardInterrupt:
        protocol.report_failure("InternalError", "interrupted", termination_log)
        return 130
    except Exception as err:  # the last line of defence: the operator must always get a reason
        reason = "OutOfMemory" if protocol.is_out_of_memory(err) else "InternalError"
        traceback.print_exc()
        protocol.report_failure(reason, f"{type(err).__name__}: {err}", termination_log)
        return exit_code_for(reason)


if __name__ == "__main__":
    sys.exit(main())
