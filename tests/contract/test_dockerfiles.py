"""Static checks of the container images (no Docker engine runs here): each Dockerfile is parsed with
dockerfile-parse and held to the repository: what it copies exists and is in the build context,
the extras it installs are defined, it ends as a numeric non-root user, and the Neuron image pins the
library versions optimum-neuron 0.4.5 was released with."""

from __future__ import annotations

import io
import json
import re
import shlex
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from dockerfile_parse import DockerfileParser
from packaging.requirements import Requirement
from packaging.version import Version

from sdxl_operator.manifests import pod_security

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

REPO_ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
EXTRAS = PYPROJECT["project"]["optional-dependencies"]

# Dockerfile -> (the extras of our package it installs, its console script)
IMAGES: dict[str, tuple[set[str], str]] = {
    "operator/Dockerfile": ({"operator"}, "sdxl-operator"),
    # The training images carry the quality extra: the trainer computes status.quality's face similarity.
    "workloads/Dockerfile.gpu": ({"train", "serve", "gpu", "quality"}, "sdxl-workload"),
    "workloads/Dockerfile.cpu": ({"train", "serve", "quality"}, "sdxl-workload"),
    "workloads/Dockerfile.neuron": ({"serve", "neuron"}, "sdxl-workload"),
}
# What optimum-neuron 0.4.5 pins (its pyproject extras) and the Neuron SDK it was released for.
NEURON_PINS = {"optimum-neuron": "0.4.5", "diffusers": "0.35.*", "transformers": "4.57.1", "peft": "0.17.0"}
NEURON_SDK = "2.26.1"


def _parse(relative: str) -> DockerfileParser:
    # An in-memory copy: the parser re-reads its file object on every property access.
    return DockerfileParser(fileobj=io.BytesIO((REPO_ROOT / relative).read_bytes()))


def _instructions(parser: DockerfileParser, name: str) -> list[str]:
    return [item["value"] for item in parser.structure if item["instruction"] == name]


def _final_stage(parser: DockerfileParser) -> list[dict[str, Any]]:
    structure = parser.structure
    last_from = max(i for i, item in enumerate(structure) if item["instruction"] == "FROM")
    return structure[last_from:]


def _copy_sources(value: str) -> list[str]:
    """Source paths of one COPY/ADD (shell or JSON form), flags dropped; [] for copies from a stage."""
    words = json.loads(value) if value.lstrip().startswith("[") else shlex.split(value)
    if any(word.startswith("--from=") for word in words):
        return []
    paths = [word for word in words if not word.startswith("--")]
    return paths[:-1]


def _installed_extras(parser: DockerfileParser) -> set[str]:
    """Extras of our own package named in pip installs: `.[a,b]` or `/src[a,b]`."""
    found: set[str] = set()
    for run in _instructions(parser, "RUN"):
        for match in re.finditer(r"""(?:^|[\s"'])(?:\.|/src)\[([A-Za-z0-9_,\-]+)\]""", run):
            found.update(match.group(1).split(","))
    return found


def _dockerignore_excludes(relative: str, rules: list[tuple[bool, re.Pattern[str]]]) -> bool:
    """Docker's rule: the last pattern matching the path or one of its parent folders decides."""
    parts = relative.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    excluded = False
    for negated, pattern in rules:
        if any(pattern.fullmatch(candidate) for candidate in candidates):
            excluded = not negated
    return excluded


def _dockerignore_rules() -> list[tuple[bool, re.Pattern[str]]]:
    rules = []
    for raw in (REPO_ROOT / ".dockerignore").read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        glob = line.lstrip("!").strip("/")
        regex = ""
        for token in re.split(r"(\*\*/?|\*|\?)", glob):
            if token in ("**", "**/"):
                regex += "(.*/)?" if token == "**/" else ".*"
            elif token == "*":
                regex += "[^/]*"
            elif token == "?":
                regex += "[^/]"
            else:
                regex += re.escape(token)
        rules.append((negated, re.compile(regex)))
    return rules


@pytest.mark.parametrize("dockerfile", IMAGES)
def test_every_copied_path_exists_and_is_in_the_build_context(dockerfile: str) -> None:
    parser = _parse(dockerfile)
    rules = _dockerignore_rules()
    sources = [s for value in _instructions(parser, "COPY") + _instructions(parser, "ADD") for s in _copy_sources(value)]
    assert sources, f"{dockerfile} copies nothing"
    for source in sources:
        path = REPO_ROOT / source
        assert path.exists(), f"{dockerfile}: COPY {source}: no such path in the repository"
        files = [path] if path.is_file() else [f for f in path.rglob("*") if f.is_file() and "__pycache__" not in f.parts]
        assert files, f"{dockerfile}: COPY {source} is empty"
        for file in files:
            relative = file.relative_to(REPO_ROOT).as_posix()
            assert not _dockerignore_excludes(relative, rules), f"{dockerfile}: .dockerignore leaves out {relative}"


@pytest.mark.parametrize("dockerfile", IMAGES)
def test_every_image_copies_the_contract_package(dockerfile: str) -> None:
    """The operator and the workloads both import ``sdxl_contract`` (the facts they share) at run time."""
    parser = _parse(dockerfile)
    sources = {s.rstrip("/") for value in _instructions(parser, "COPY") for s in _copy_sources(value)}
    assert "contract/sdxl_contract" in sources, f"{dockerfile} does not copy contract/sdxl_contract"


def _copied_packages(parser: DockerfileParser) -> set[str]:
    """Top-level import packages among what the COPY lines bring in: what `pip install .[...]` there can ship."""
    found: set[str] = set()
    for value in _instructions(parser, "COPY"):
        for source in _copy_sources(value):
            path = REPO_ROOT / source
            if path.is_dir():
                found.update(init.parent.name for init in [path / "__init__.py", *path.rglob("__init__.py")]
                             if init.is_file() and not (init.parent.parent / "__init__.py").is_file())
    return found


def test_the_operator_image_holds_the_operator_and_the_contract_only() -> None:
    assert _copied_packages(_parse("operator/Dockerfile")) == {"sdxl_operator", "sdxl_contract"}


def test_the_operator_runs_on_jemalloc_for_every_python_object() -> None:
    """The allocator the memory figures at 1,000 deployments were measured with (bench/README.md)."""
    parser = _parse("operator/Dockerfile")
    env = parser.envs
    assert env.get("PYTHONMALLOC") == "malloc"
    library = env.get("LD_PRELOAD", "")
    installs = " ".join(_instructions(parser, "RUN"))
    assert "libjemalloc2" in installs
    assert re.search(rf"ln -s [^&]*libjemalloc\.so\.2[^&]* {re.escape(library)}(\s|$)", installs), (library, installs)
    # The link is made before the image drops to its user, and before LD_PRELOAD applies to RUN steps.
    order = [item["instruction"] + " " + item["value"] for item in parser.structure]
    linked = next(i for i, line in enumerate(order) if line.startswith("RUN") and library in line)
    preloaded = next(i for i, line in enumerate(order) if line.startswith("ENV") and "LD_PRELOAD" in line)
    assert linked < preloaded


@pytest.mark.parametrize("dockerfile", IMAGES)
def test_no_image_holds_the_sandbox(dockerfile: str) -> None:
    """The sandbox is a development tool (``pip install .[dev]`` from a checkout), never shipped."""
    assert "sdxl_sandbox" not in _copied_packages(_parse(dockerfile))


def test_dockerignore_keeps_the_rest_of_the_repository_out() -> None:
    rules = _dockerignore_rules()
    for relative in (".venv/bin/python", "tests/conftest.py", ".git/HEAD", "charts/sdxl-operator/Chart.yaml",
                     "sandbox/sdxl_sandbox/command.py",
                     "workloads/sdxl_workloads/__pycache__/cli.cpython-311.pyc"):
        assert _dockerignore_excludes(relative, rules), relative


@pytest.mark.parametrize("dockerfile", IMAGES)
def test_installs_exactly_its_defined_extras(dockerfile: str) -> None:
    expected, _ = IMAGES[dockerfile]
    installed = _installed_extras(_parse(dockerfile))
    undefined = installed - set(EXTRAS)
    assert not undefined, f"{dockerfile} installs extras pyproject.toml does not define: {sorted(undefined)}"
    assert installed == expected


@pytest.mark.parametrize("dockerfile", IMAGES)
def test_ends_as_a_numeric_non_root_user(dockerfile: str) -> None:
    users = [item["value"] for item in _final_stage(_parse(dockerfile)) if item["instruction"] == "USER"]
    assert users, f"{dockerfile}: the final stage sets no USER, so it runs as root"
    user, _, group = users[-1].partition(":")
    # Numeric, so the kubelet can enforce runAsNonRoot without a runAsUser in the pod spec.
    assert user.isdigit() and int(user) != 0, f"{dockerfile}: final USER {users[-1]!r}"
    assert group.isdigit() and int(group) != 0, f"{dockerfile}: final USER {users[-1]!r} has no numeric group"
    # The same ids the pods run with, so files the image prepared stay readable and writable.
    if dockerfile == "operator/Dockerfile":
        values = yaml.safe_load((REPO_ROOT / "charts" / "sdxl-operator" / "values.yaml").read_text())
        context = values["operator"]["podSecurityContext"]
        assert (int(user), int(group)) == (context["runAsUser"], context["runAsGroup"])
    else:
        assert (int(user), int(group)) == (pod_security.RUN_AS_USER, pod_security.RUN_AS_GROUP)


@pytest.mark.parametrize("dockerfile", IMAGES)
def test_entrypoint_is_a_console_script_of_the_package(dockerfile: str) -> None:
    _, script = IMAGES[dockerfile]
    assert script in PYPROJECT["project"]["scripts"]
    entrypoints = _instructions(_parse(dockerfile), "ENTRYPOINT")
    assert json.loads(entrypoints[-1]) == [script]


def test_base_images() -> None:
    assert _parse("operator/Dockerfile").baseimage == "python:3.11-slim"
    assert _parse("workloads/Dockerfile.cpu").baseimage == "python:3.11-slim"
    # The GPU image takes torch from PyPI at the tested pin (see test_gpu_image_runs_the_tested_torch).
    assert _parse("workloads/Dockerfile.gpu").baseimage == "python:3.11-slim"
    neuron = _parse("workloads/Dockerfile.neuron").baseimage
    # The AWS Neuron DLC: Python 3.10, torch 2.8, and the compiler, torch-neuronx and runtime of the one
    # SDK release optimum-neuron 0.4.5 targets, so the runtime runs what its own compiler built.
    assert re.fullmatch(
        r"763104351884\.dkr\.ecr\.[a-z0-9-]+\.amazonaws\.com/pytorch-inference-neuronx:"
        rf"2\.8\.\d+-neuronx-py310-sdk{re.escape(NEURON_SDK)}-ubuntu22\.04",
        neuron,
    ), neuron


def test_gpu_image_runs_the_tested_torch() -> None:
    """The GPU image installs torch from constraints.txt, whose pin is the torch these tests run."""
    import torch

    runs = " ".join(_instructions(_parse("workloads/Dockerfile.gpu"), "RUN"))
    assert re.search(r"pip install -c constraints\.txt torch\b", runs)
    assert "--index-url" not in runs  # PyPI's wheel is the CUDA build
    pins = dict(line.split("==", 1) for line in (REPO_ROOT / "constraints.txt").read_text().splitlines()
                if line.startswith("torch=="))
    assert pins["torch"] == torch.__version__.split("+")[0]


def test_cpu_image_takes_torch_from_the_cpu_index() -> None:
    runs = " ".join(_instructions(_parse("workloads/Dockerfile.cpu"), "RUN"))
    assert re.search(r"--index-url https://download\.pytorch\.org/whl/cpu torch\b", runs)


@pytest.mark.parametrize("dockerfile", ["workloads/Dockerfile.neuron"])
def test_accelerator_images_keep_the_base_torch(dockerfile: str) -> None:
    """The base image's torch (the Neuron build) is pinned as a constraint before installing."""
    runs = _instructions(_parse(dockerfile), "RUN")
    install = next(run for run in runs if "pip install" in run)
    pin = re.search(r"print\(f'torch==\{torch\.__version__\}'\)\"\s*>>?\s*(\S+)", install)
    assert pin, f"{dockerfile}: the installed torch version is not captured"
    assert re.search(rf"pip install -c {re.escape(pin.group(1))}\b", install)


def test_neuron_image_pins_the_optimum_neuron_versions() -> None:
    parser = _parse("workloads/Dockerfile.neuron")
    args = parser.args
    install = next(run for run in _instructions(parser, "RUN") if "pip install" in run)
    for name, version in NEURON_PINS.items():
        argument = f"{name.upper().replace('-', '_')}_VERSION"
        assert args.get(argument) == version, f"ARG {argument}"
        assert re.search(rf'"{re.escape(name)}(\[[a-z,]+\])?==\$\{{{argument}\}}"', install), name
    # The neuron extra and the image agree on optimum-neuron.
    [requirement] = [Requirement(r) for r in EXTRAS["neuron"] if Requirement(r).name == "optimum-neuron"]
    assert Version(NEURON_PINS["optimum-neuron"]) in requirement.specifier


@pytest.mark.parametrize("name", ["diffusers", "transformers", "peft", "torch"])
def test_serve_extra_accepts_the_neuron_image_versions(name: str) -> None:
    """`.[serve]` installs in the Neuron image only if its bounds admit the versions pinned there."""
    pinned = {**NEURON_PINS, "torch": "2.8.0"}[name].replace(".*", ".0")
    requirements = [Requirement(r) for r in EXTRAS["serve"] if Requirement(r).name == name]
    assert requirements, f"serve extra has no {name}"
    for requirement in requirements:
        assert Version(pinned) in requirement.specifier, f"serve extra {requirement} excludes {name} {pinned}"


@pytest.mark.slow
@pytest.mark.parametrize("dockerfile", ["operator/Dockerfile", "workloads/Dockerfile.cpu"])
def test_package_builds_from_only_what_the_image_copies(dockerfile: str, tmp_path: Path) -> None:
    """pip builds our distribution from the copied files alone (the image's `pip install .[...]`),
    and the wheel holds the package the ENTRYPOINT runs."""
    parser = _parse(dockerfile)
    context = tmp_path / "context"
    for value in _instructions(parser, "COPY"):
        words = shlex.split(value)
        destination = words[-1]
        for source in _copy_sources(value):
            origin = REPO_ROOT / source
            # Destinations are relative to WORKDIR /src, the folder pip builds; a trailing / keeps the name.
            target = context / destination / origin.name if destination.endswith("/") else context / destination
            if origin.is_dir():
                shutil.copytree(origin, target, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(origin, target)
    completed = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path / "dist"),
         str(context)],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert completed.returncode == 0, completed.stderr
    [wheel] = (tmp_path / "dist").glob("*.whl")
    with zipfile.ZipFile(wheel) as archive:
        top_level = {name.split("/")[0] for name in archive.namelist()}
        entry_points = next(n for n in archive.namelist() if n.endswith("entry_points.txt"))
        scripts = archive.read(entry_points).decode()
    _, script = IMAGES[dockerfile]
    package = {"sdxl-operator": "sdxl_operator", "sdxl-workload": "sdxl_workloads"}[script]
    assert package in top_level
    assert "sdxl_contract" in top_level  # every image's package imports it
    assert "sdxl_sandbox" not in top_level  # a development tool, never in an image
    assert f"{script} = {package}." in scripts


@pytest.mark.parametrize("dockerfile", IMAGES)
def test_run_commands_are_valid_shell(dockerfile: str) -> None:
    """Each shell-form RUN parses with `sh -n` (Docker runs it with /bin/sh -c)."""
    for run in _instructions(_parse(dockerfile), "RUN"):
        checked = subprocess.run(["sh", "-n", "-c", run], capture_output=True, text=True, check=False)
        assert checked.returncode == 0, f"{dockerfile}: RUN {run[:80]}...: {checked.stderr}"
