"""``sdxl-operator sandbox [FILES...]``: the whole product on this machine, from custom resources to images.

Starts the :class:`~sdxl_sandbox.sandbox.Sandbox` (API emulator, the real operator, the local
executor), applies FILES (default: the world fine-tune and its CPU deployment from ``crds/examples``),
prints the resources as ``kubectl get`` would whenever they change, and once every SDXLDeployment is
Ready, calls it (``POST /v1/generate``) and saves the images to the output folder. A deployment that
serves a fine-tune of ``builtin:world`` as an adapter (the default examples) is also asked for the
subject in new settings and for the class prompt, by the base model and by the fine-tune: the
images make ``contact-sheet.png`` in the output folder and a quality report (identity, prompt
fidelity, class drift) is printed. Exit status: 0 when
images came back, 1 when a resource failed, the operator died or time ran out (the message says what
and why), 2 for bad arguments or files. Ctrl-C stops everything it started.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO

from sdxl_sandbox.api_client import ApiError
from sdxl_sandbox.contact_sheet import render_contact_sheet, save_contact_sheet
from sdxl_sandbox.image_request import GenerateError, generate_images, save_images, served_adapters
from sdxl_sandbox.sandbox import CONTROL_PLANES, DEPLOYMENTS, FINETUNES, Sandbox, load_manifests
from sdxl_sandbox.subject_comparison import (
    COLUMN_TITLES,
    IMAGES_PER_PROMPT,
    adapter_ready,
    compares_world_subject,
    draw_both,
    measured_quality,
    quality_report,
)
from sdxl_sandbox.tables import (
    deployment_row,
    explanation,
    finetune_row,
    progress_line,
    render_table,
)

DEFAULT_EXAMPLES = ("finetune-world.yaml", "deployment-world-cpu.yaml")
CONTACT_SHEET = "contact-sheet.png"
SDXL_GROUP = "sdxl.io/"
PROGRESS_EVERY_SECONDS = 3.0
# How long a server may take to pick up an adapter after its deployment lists it as ready: the
# adapters ConfigMap reaches the pods' volume, and the server rereads the file, on their own clocks.
ADAPTER_JOIN_SECONDS = 120.0


def find_default_files() -> list[Path]:
    """The default examples: ``crds/examples`` under the current folder, else in this source tree."""
    for root in (Path.cwd(), Path(__file__).resolve().parents[2]):
        folder = root / "crds" / "examples"
        files = [folder / name for name in DEFAULT_EXAMPLES]
        if all(path.is_file() for path in files):
            return files
    raise FileNotFoundError("cannot find crds/examples/" + " and ".join(DEFAULT_EXAMPLES) +
                            "; run from the repository root or name the files to apply")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sdxl-operator sandbox",
        description="Run the operator and its workloads on this machine against an emulated Kubernetes API "
                    "(a development tool), apply FILES, wait for them, and save images from each deployment.")
    parser.add_argument("files", nargs="*", type=Path, metavar="FILE",
                        help="manifests to apply (default: crds/examples/" + " and ".join(DEFAULT_EXAMPLES) + ")")
    parser.add_argument("--workdir", type=Path, default=Path(".sandbox"),
                        help="folder for the kubeconfig, logs, volumes and the artifact store (default: .sandbox)")
    parser.add_argument("--output", type=Path, default=Path("demo-output"),
                        help="where the generated images go (default: demo-output)")
    parser.add_argument("--timeout", type=float, default=1200.0, metavar="S",
                        help="give up after S seconds (default: 1200)")
    parser.add_argument("--threads", type=int, default=1, metavar="N",
                        help="CPU threads per workload process (default: 1; the tiny model gains nothing from more)")
    parser.add_argument("--control-plane", choices=CONTROL_PLANES, default="emulator",
                        help="the API server: 'emulator' (default; fast, in-process, no controllers) or 'real' "
                             "(kube-apiserver, controller manager, scheduler and etcd built from their Go modules "
                             "on first use, simulated GPU, inf2 and CPU nodes, the Helm chart installed)")
    parser.add_argument("--keep", action="store_true",
                        help="keep everything running after the images are saved, until Ctrl-C")
    parser.add_argument("--prompt", default=None, help="prompt to generate (default: the fine-tune's validation "
                                                       "prompt, else its instance prompt)")
    return parser


class Reporter:
    """Prints tables when something changes and a progress line now and then."""

    def __init__(self, out: TextIO) -> None:
        self._out = out
        self._last_table = ""
        self._last_notes: dict[str, str] = {}
        self._last_progress: dict[str, tuple[float, str]] = {}
        self._pod_states: dict[str, str] = {}
        self._began = time.monotonic()

    def elapsed(self) -> float:
        return time.monotonic() - self._began

    def say(self, text: str) -> None:
        print(text, file=self._out, flush=True)

    def pods(self, pods: list[dict[str, Any]]) -> None:
        """A line per pod state change: what runs where, while the resources' phases stay put."""
        for pod in pods:
            name = pod["metadata"]["name"]
            state = pod_state(pod)
            if state and self._pod_states.get(name) != state:
                self.say(f"  pod/{name}: {state}")
            self._pod_states[name] = state

    def update(self, finetunes: list[dict[str, Any]], deployments: list[dict[str, Any]]) -> None:
        rows = [finetune_row(f) for f in finetunes] + [deployment_row(d) for d in deployments]
        # The table changes with the phase/readiness, not with every training step.
        key = repr([row[:2] + row[4:] for row in rows])
        if key != self._last_table:
            self._last_table = key
            self.say(f"\n[{time.monotonic() - self._began:5.0f}s]\n{render_table(rows)}")
        for obj in finetunes + deployments:
            name = obj["metadata"]["name"]
            note = explanation(obj) or ""
            # Once per reason: the message itself may count training steps, which the progress line shows.
            reason = note.split(":", 1)[0]
            if note and self._last_notes.get(name) != reason:
                self.say(f"  {name}: {note}")
            self._last_notes[name] = reason
        for finetune in finetunes:
            line = progress_line(finetune)
            name = finetune["metadata"]["name"]
            when, text = self._last_progress.get(name, (0.0, ""))
            if line and line != text and time.monotonic() - when >= PROGRESS_EVERY_SECONDS:
                self._last_progress[name] = (time.monotonic(), line)
                self.say(f"  {line}")


def pod_state(pod: Mapping[str, Any]) -> str:
    """``Running``, ``Running, ready``, ``Succeeded``, ``Failed (exit 2)``, ``Pending (ContainerCreating)``."""
    status = pod.get("status") or {}
    phase = str(status.get("phase") or "")
    containers = status.get("containerStatuses") or [{}]
    state = containers[0].get("state") or {}
    if "waiting" in state:
        return f"{phase} ({state['waiting'].get('reason')})"
    if "terminated" in state and phase == "Failed":
        return f"{phase} (exit {state['terminated'].get('exitCode')})"
    if phase == "Running" and containers[0].get("ready"):
        return "Running, ready"
    return phase


def _prompt_for(deployment: Mapping[str, Any], finetunes: Mapping[str, Mapping[str, Any]], wanted: str | None) -> str:
    if wanted:
        return wanted
    spec = deployment.get("spec") or {}
    finetune = finetunes.get(str(spec.get("fineTune") or (spec.get("fineTunes") or [None])[0]))
    ft_spec = (finetune or {}).get("spec") or {}
    prompts = (ft_spec.get("validation") or {}).get("prompts") or []
    return str(prompts[0] if prompts else ft_spec.get("instancePrompt") or "a photo")


async def run(args: argparse.Namespace, out: TextIO) -> int:
    try:
        files = list(args.files) or find_default_files()
        manifests = [obj for path in files for obj in load_manifests(path)]
    except (FileNotFoundError, ValueError) as exc:
        print(f"sdxl-operator sandbox: {exc}", file=sys.stderr)
        return 2
    reporter = Reporter(out)
    async with Sandbox(args.workdir, threads=args.threads, control_plane=args.control_plane) as sandbox:
        reporter.say(f"API server {sandbox.server_url} (kubectl --kubeconfig {sandbox.kubeconfig}); "
                     f"operator log {sandbox.operator_log}; pod logs under {sandbox.workdir / 'pods'}")
        applied: list[tuple[str, str, str]] = []
        for obj in manifests:
            try:
                created = await sandbox.apply(obj)
            except (ValueError, ApiError) as exc:
                print(f"sdxl-operator sandbox: cannot create {obj['kind']} {obj['metadata']['name']}: {exc}",
                      file=sys.stderr)
                return 2
            meta = created["metadata"]
            reporter.say(f"created {obj['kind']} {meta['namespace']}/{meta['name']}")
            if str(obj["apiVersion"]).startswith(SDXL_GROUP):
                resource = FINETUNES if obj["kind"] == "SDXLFineTune" else DEPLOYMENTS
                applied.append((resource, meta["namespace"], meta["name"]))
        code = await _watch(sandbox, applied, reporter, args)
        if code == 0 and args.keep:
            reporter.say("\nEverything keeps running; press Ctrl-C to stop.")
            reporter.say(f"inspect with: KUBECONFIG={sandbox.kubeconfig} kubectl get sdxl")
            await asyncio.Event().wait()
        return code


async def _watch(sandbox: Sandbox, applied: list[tuple[str, str, str]], reporter: Reporter,
                 args: argparse.Namespace) -> int:
    deadline = time.monotonic() + args.timeout
    while True:
        objects = {(res, ns, name): await sandbox.get(res, ns, name) for res, ns, name in applied}
        finetunes = [o for (res, _, _), o in objects.items() if o and res == FINETUNES]
        deployments = [o for (res, _, _), o in objects.items() if o and res == DEPLOYMENTS]
        reporter.pods(await sandbox.list("v1/pods"))
        reporter.update(finetunes, deployments)
        for obj in finetunes + deployments:
            status = obj.get("status") or {}
            if status.get("phase") == "Failed":
                failure = status.get("failure") or {}
                reporter.say(f"\nFAILED: {obj['kind']} {obj['metadata']['name']}: {failure.get('reason')}: "
                             f"{failure.get('message')}\n(operator log: {sandbox.operator_log}; pod logs under "
                             f"{sandbox.workdir / 'pods'})")
                return 1
        exited = sandbox.operator_exited()
        if exited is not None:
            reporter.say(f"\nFAILED: the operator exited with status {exited}; see {sandbox.operator_log}")
            return 1
        done_ft = all((f.get("status") or {}).get("phase") == "Succeeded" for f in finetunes)
        ready = [d for d in deployments if (d.get("status") or {}).get("phase") == "Ready"
                 and serves_every_adapter(d) and sandbox.service_url(d["metadata"]["namespace"], d["metadata"]["name"])]
        if done_ft and len(ready) == len(deployments) and len(objects) == len(finetunes) + len(deployments):
            return await _generate(sandbox, finetunes, deployments, reporter, args)
        if time.monotonic() > deadline:
            pending = [f"{o['kind']} {o['metadata']['name']} ({(o.get('status') or {}).get('phase') or 'no status'})"
                       for o in finetunes + deployments
                       if (o.get("status") or {}).get("phase") not in ("Succeeded", "Ready")]
            reporter.say(f"\nTIMED OUT after {args.timeout:.0f}s; still pending: {', '.join(pending) or 'nothing'}"
                         f"\n(operator log: {sandbox.operator_log}; pod logs under {sandbox.workdir / 'pods'})")
            return 1
        await asyncio.sleep(1.0)


def serves_every_adapter(deployment: Mapping[str, Any]) -> bool:
    """Whether the server pods serve each fine-tune spec.fineTunes names: a set's server is Ready
    before its fine-tunes succeed, and an adapter joins it only afterwards."""
    names = (deployment.get("spec") or {}).get("fineTunes") or []
    return all(adapter_ready(deployment, str(name)) for name in names)


async def _generate(sandbox: Sandbox, finetunes: list[dict[str, Any]], deployments: list[dict[str, Any]],
                    reporter: Reporter, args: argparse.Namespace) -> int:
    by_name = {f["metadata"]["name"]: f for f in finetunes}
    for deployment in deployments:
        meta = deployment["metadata"]
        url = sandbox.service_url(meta["namespace"], meta["name"])
        assert url is not None  # checked by the caller
        adapter = compares_world_subject(deployment)
        prompt = _prompt_for(deployment, by_name, args.prompt)
        reporter.say(f"\ncalling {meta['name']} ({deployment['status'].get('url')}, here {url}): "
                     f"POST /v1/generate {prompt!r}" + (f" with adapter {adapter!r}" if adapter else ""))
        try:
            if adapter:
                await _wait_for_adapter(url, adapter, reporter)
            images = await generate_images(url, prompt, extra={"adapter": adapter} if adapter else None)
            for path in save_images(images, args.output, meta["name"]):
                reporter.say(f"saved {path}")
            if adapter:
                await _compare(sandbox, url, adapter, by_name.get(adapter), reporter, args)
        except (GenerateError, OSError, asyncio.TimeoutError) as exc:
            reporter.say(f"FAILED: {exc}")
            return 1
    reporter.say(f"\ndone in {reporter.elapsed():.0f}s")
    return 0


async def _wait_for_adapter(url: str, adapter: str, reporter: Reporter) -> None:
    """Until the server itself lists `adapter` (GET /v1/adapters): status.adapters[].ready says the
    operator published it, which the pods read a little later."""
    deadline = time.monotonic() + ADAPTER_JOIN_SECONDS
    if adapter not in await served_adapters(url):
        reporter.say(f"waiting for the server to load adapter {adapter!r}")
    while adapter not in await served_adapters(url):
        if time.monotonic() > deadline:
            raise GenerateError(f"the server does not serve adapter {adapter!r} {ADAPTER_JOIN_SECONDS:.0f}s after "
                                "its deployment listed it; see the server pod's log")
        await asyncio.sleep(0.5)


async def _compare(sandbox: Sandbox, url: str, adapter: str, finetune: Mapping[str, Any] | None,
                   reporter: Reporter, args: argparse.Namespace) -> None:
    """The contact sheet of the base model against fine-tune `adapter`, and its quality report."""
    spec = (finetune or {}).get("spec") or {}
    reporter.say(f"\ncomparing the base model with {adapter}: {IMAGES_PER_PROMPT} images per prompt from each")
    comparison = await draw_both(url, adapter, str(spec.get("instancePrompt") or "a photo of sks person"))
    path = save_contact_sheet(render_contact_sheet(COLUMN_TITLES, comparison.rows()), args.output / CONTACT_SHEET)
    reporter.say(f"saved {path} (rows: prompts; columns: {', '.join(COLUMN_TITLES)})")
    # status.quality as it is now: the trainer may have reported it since the watch last read it.
    namespace = (finetune or {}).get("metadata", {}).get("namespace", "default")
    current = await sandbox.get(FINETUNES, namespace, adapter) or {}
    status_quality = (current.get("status") or {}).get("quality")
    for line in quality_report(adapter, status_quality, measured_quality(comparison), IMAGES_PER_PROMPT):
        reporter.say(line)


def main(argv: Sequence[str]) -> int:
    args = build_parser().parse_args(list(argv))
    if args.threads < 1 or args.timeout <= 0:
        print("sdxl-operator sandbox: --threads must be >= 1 and --timeout > 0", file=sys.stderr)
        return 2

    async def guarded() -> int:
        task = asyncio.current_task()
        loop = asyncio.get_running_loop()
        if task is not None:
            with contextlib.suppress(NotImplementedError):  # a SIGTERM stops everything like Ctrl-C
                loop.add_signal_handler(signal.SIGTERM, task.cancel)
        return await run(args, sys.stdout)

    try:
        return asyncio.run(guarded())
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("\nstopped; every process the sandbox started has been stopped", file=sys.stderr)
        return 130
