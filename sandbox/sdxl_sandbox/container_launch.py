"""How one container of a pod becomes a local command line: program, arguments, environment, ports.

* ``command[0]`` names a console script (``sdxl-workload``, ``sdxl-operator``): it resolves to the
  script beside this Python (the current virtual environment), else to ``PATH``. Images are ignored:
  the sandbox runs the code installed here.
* Environment: the container's ``env`` only (a container does not inherit the host's), with
  ``valueFrom.fieldRef`` (``metadata.name``/``namespace``/``uid``, ``status.podIP``, labels and
  annotations), ``secretKeyRef`` and ``configMapKeyRef`` resolved; plus ``PATH``/``LANG``, the
  thread-pool sizes (so the local processes share the machine's cores politely) and
  ``SDXL_TERMINATION_LOG`` pointing at a local file that stands in for ``terminationMessagePath``
  (the path itself, where it occurs in arguments or values, is rewritten to that file too).
* Every mount path in arguments and values is rewritten to its local folder (see ``path_mapping``);
  ``SDXL_PVC_ROOT`` becomes the sandbox's folder of claims.
* Each container port gets a free loopback port; ``--port <containerPort>`` in the arguments is
  rewritten to it, and servers bind to 127.0.0.1 instead of every interface.
"""

from __future__ import annotations

import base64
import dataclasses
import os
import shutil
import socket
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sdxl_contract.workload_protocol import PVC_ROOT_ENV, TERMINATION_LOG_ENV
from sdxl_sandbox.path_mapping import PodFilesystem, VolumeNotReady

LOOPBACK = "127.0.0.1"
PASS_THROUGH_ENV = ("PATH", "LANG", "LC_ALL", "TZ")
THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "TORCH_NUM_THREADS")


@dataclasses.dataclass(frozen=True)
class LaunchPlan:
    """Everything needed to start the container locally."""

    argv: list[str]
    env: dict[str, str]
    ports: dict[str, int]  # container port (number as text, and its name when named) -> local port
    termination_log: Path


def free_port() -> int:
    """A TCP port on the loopback interface that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def resolve_program(name: str) -> str:
    """The executable for ``command[0]``: the current environment's script first, then ``PATH``."""
    if os.sep in name:
        return name
    beside = Path(sys.executable).parent / name
    if beside.exists():
        return str(beside)
    found = shutil.which(name)
    if found is None:
        raise FileNotFoundError(f"executable {name!r} not found in {beside.parent} or on PATH")
    return found


def _field_value(pod: Mapping[str, Any], path: str) -> str:
    meta = pod.get("metadata") or {}
    if path in ("metadata.name", "metadata.namespace", "metadata.uid"):
        return str(meta.get(path.split(".", 1)[1]) or "")
    if path == "status.podIP" or path == "status.hostIP":
        return LOOPBACK
    if path == "spec.nodeName":
        return str((pod.get("spec") or {}).get("nodeName") or "sandbox")
    if path == "spec.serviceAccountName":
        return str((pod.get("spec") or {}).get("serviceAccountName") or "default")
    for prefix, source in (("metadata.labels", "labels"), ("metadata.annotations", "annotations")):
        if path.startswith(prefix + "['") and path.endswith("']"):
            return str((meta.get(source) or {}).get(path[len(prefix) + 2:-2], ""))
    raise ValueError(f"fieldRef {path!r} is not emulated by the sandbox")


def _key_value(objects: Mapping[str, Mapping[str, Any]], ref: Mapping[str, Any], kind: str) -> str | None:
    obj = objects.get(ref["name"])
    if obj is None:
        if ref.get("optional"):
            return None
        raise VolumeNotReady(f"{kind} {ref['name']!r} (env) not found")
    if kind == "Secret":
        data = obj.get("data") or {}
        if ref["key"] in data:
            return base64.b64decode(data[ref["key"]]).decode("utf-8")
        value = (obj.get("stringData") or {}).get(ref["key"])
    else:
        value = (obj.get("data") or {}).get(ref["key"])
    if value is None and not ref.get("optional"):
        raise VolumeNotReady(f"{kind} {ref['name']!r} has no key {ref['key']!r}")
    return None if value is None else str(value)


def _rewrite_port_args(args: list[str], ports: Mapping[str, int]) -> list[str]:
    result = list(args)
    for index, arg in enumerate(result):
        if arg == "--port" and index + 1 < len(result) and result[index + 1] in ports:
            result[index + 1] = str(ports[result[index + 1]])
        elif arg.startswith("--port=") and arg.split("=", 1)[1] in ports:
            result[index] = f"--port={ports[arg.split('=', 1)[1]]}"
    if ports and "--port" in result and not any(a == "--host" or a.startswith("--host=") for a in result):
        result += ["--host", LOOPBACK]  # the container would listen on its own IP; here: loopback only
    return result


def plan_launch(
    pod: Mapping[str, Any], container: Mapping[str, Any], filesystem: PodFilesystem, *, pod_dir: Path,
    pvc_root: Path, configmaps: Mapping[str, Mapping[str, Any]], secrets: Mapping[str, Mapping[str, Any]],
    threads: int,
) -> LaunchPlan:
    """The local command line for ``container`` of ``pod`` (see the module docstring)."""
    command = list(container.get("command") or [])
    if not command:
        raise ValueError(f"container {container.get('name')!r} has no command; the sandbox cannot run an "
                         "image's entrypoint")
    ports: dict[str, int] = {}
    for port in container.get("ports") or []:
        local = free_port()
        ports[str(port["containerPort"])] = local
        if port.get("name"):
            ports[str(port["name"])] = local

    termination_log = pod_dir / "termination-log"
    termination_log.parent.mkdir(parents=True, exist_ok=True)
    termination_log.write_text("", encoding="utf-8")
    # A program told the termination message path itself (in args or env) writes the local file too.
    message_path = str(container.get("terminationMessagePath") or "/dev/termination-log")
    filesystem = PodFilesystem({**filesystem.mounts, message_path: termination_log})
    env: dict[str, str] = {name: os.environ[name] for name in PASS_THROUGH_ENV if name in os.environ}
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", os.defpath)])
    env.update({name: str(threads) for name in THREAD_ENV})
    for item in container.get("env") or []:
        value: str | None
        if "value" in item:
            value = filesystem.rewrite(str(item["value"]))
        else:
            source = item.get("valueFrom") or {}
            if "fieldRef" in source:
                value = _field_value(pod, source["fieldRef"]["fieldPath"])
            elif "secretKeyRef" in source:
                value = _key_value(secrets, source["secretKeyRef"], "Secret")
            elif "configMapKeyRef" in source:
                value = _key_value(configmaps, source["configMapKeyRef"], "ConfigMap")
            else:
                raise ValueError(f"env {item.get('name')!r}: valueFrom {sorted(source)} is not emulated")
        if value is not None:
            env[item["name"]] = value
    env[PVC_ROOT_ENV] = str(pvc_root)
    env[TERMINATION_LOG_ENV] = str(termination_log)
    tmp = filesystem.local_path("/tmp")
    if tmp != "/tmp":
        env["TMPDIR"] = tmp

    argv = [resolve_program(command[0])] + [filesystem.rewrite(str(a)) for a in command[1:]]
    argv += _rewrite_port_args([filesystem.rewrite(str(a)) for a in container.get("args") or []], ports)
    return LaunchPlan(argv=argv, env=env, ports=ports, termination_log=termination_log)
