"""Every name and keyword our Inferentia2 code passes to optimum-neuron exists in the pinned release.

optimum-neuron cannot be imported here (it needs torch-neuronx and neuronx-cc, which only the Neuron
image has), so `make setup` installs it with `--no-deps` and this test reads its source with `ast`.
The keywords come from `sdxl_workloads.models.neuron_export` itself (its argument builders and its calls),
so a change there is checked without editing this file.
"""

from __future__ import annotations

import ast
from importlib import metadata
from pathlib import Path

import pytest

from sdxl_workloads.models import neuron_export

DIST = "optimum-neuron"


def _installed_version() -> str | None:
    try:
        return metadata.version(DIST)
    except metadata.PackageNotFoundError:
        return None


def _source(relpath: str) -> ast.Module:
    # A missing package is a failure, not a skip: a skipped contract test would hide the gap.
    if _installed_version() is None:
        pytest.fail(f"{DIST} is not installed; `make setup` installs it with --no-deps")
    path = Path(str(metadata.distribution(DIST).locate_file(relpath)))
    assert path.is_file(), f"{relpath} is missing from optimum-neuron {_installed_version()}"
    return ast.parse(path.read_text(), filename=str(path))


def _module_file(module: str) -> str:
    base = module.replace(".", "/")
    init = Path(str(metadata.distribution(DIST).locate_file(f"{base}/__init__.py")))
    return f"{base}/__init__.py" if init.is_file() else f"{base}.py"


def _top_level(tree: ast.Module, name: str) -> ast.FunctionDef | ast.ClassDef:
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and node.name == name:
            return node
    raise AssertionError(f"{name} is not defined at the top level")


def _method(cls: ast.ClassDef, name: str) -> ast.FunctionDef:
    for node in cls.body:
        if isinstance(node, ast.FunctionDef) and node.name == name:
            return node
    raise AssertionError(f"{cls.name}.{name} is not defined")


def _parameters(func: ast.FunctionDef) -> set[str]:
    args = func.args
    return {a.arg for a in [*args.posonlyargs, *args.args, *args.kwonlyargs]}


def _dataclass_fields(cls: ast.ClassDef) -> set[str]:
    return {n.target.id for n in cls.body if isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name)}


def _exported_names(tree: ast.Module) -> set[str]:
    """Names a module provides: its defs/classes, what it imports, and its lazy `_import_structure`."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.ImportFrom):
            names.update(alias.asname or alias.name for alias in node.names)
    return names


def _lazy_names(tree: ast.Module) -> set[str] | None:
    """The strings listed in `_import_structure` (transformers' lazy modules), None if not lazy."""
    found: set[str] | None = None
    for node in ast.walk(tree):
        targets: list[ast.expr] = []
        if isinstance(node, ast.Assign):
            targets = node.targets
        elif isinstance(node, ast.AnnAssign):
            targets = [node.target]
        for target in targets:
            base = target.value if isinstance(target, ast.Subscript) else target
            if isinstance(base, ast.Name) and base.id == "_import_structure":
                found = found or set()
                value = node.value
                assert value is not None
                found.update(c.value for c in ast.walk(value)
                             if isinstance(c, ast.Constant) and isinstance(c.value, str))
    return found


def _our_calls() -> dict[str, set[str]]:
    """Explicit keyword names in each call `neuron_export` makes, by callee name."""
    tree = ast.parse(Path(neuron_export.__file__).read_text())
    calls: dict[str, set[str]] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
            if name:
                calls.setdefault(name, set()).update(k.arg for k in node.keywords if k.arg)
    return calls


def test_the_pinned_release_is_installed() -> None:
    assert _installed_version() == neuron_export.OPTIMUM_NEURON_VERSION


@pytest.mark.parametrize("module", sorted(neuron_export.OPTIMUM_IMPORTS))
def test_every_imported_name_exists(module: str) -> None:
    tree = _source(_module_file(module))
    lazy = _lazy_names(tree)
    provided = lazy if lazy is not None else _exported_names(tree)
    missing = set(neuron_export.OPTIMUM_IMPORTS[module]) - provided
    assert not missing, f"{module} does not provide {sorted(missing)}"


def test_every_import_in_the_module_is_declared() -> None:
    """OPTIMUM_IMPORTS is what the other tests check, so it must list every optimum import we make."""
    tree = ast.parse(Path(neuron_export.__file__).read_text())
    imported = {(n.module, a.name) for n in ast.walk(tree)
                if isinstance(n, ast.ImportFrom) and n.module and n.module.startswith("optimum")
                for a in n.names}
    declared = {(m, name) for m, names in neuron_export.OPTIMUM_IMPORTS.items() for name in names}
    assert imported <= declared, f"undeclared optimum imports: {sorted(imported - declared)}"
    assert imported, "neuron_export no longer imports optimum-neuron: update this test"


def test_main_export_takes_every_keyword_we_pass() -> None:
    main_export = _top_level(_source("optimum/exporters/neuron/__main__.py"), "main_export")
    assert isinstance(main_export, ast.FunctionDef)
    ours = set(neuron_export.main_export_arguments("base", None, Path("out"))) | _our_calls()["main_export"]
    assert ours - _parameters(main_export) == set()
    # The per-component shapes from normalize_diffusers_input_shapes go into its **input_shapes.
    assert main_export.args.kwarg is not None


def test_we_call_main_export_as_from_pretrained_export_does() -> None:
    """`from_pretrained(export=True)` is `_export`, which calls main_export: we pass no keyword it does not."""
    tree = _source("optimum/neuron/modeling_diffusion.py")
    base = _top_level(tree, "NeuronDiffusionPipelineBase")
    assert isinstance(base, ast.ClassDef)
    export = _method(base, "_export")
    theirs = {k.arg for n in ast.walk(export) if isinstance(n, ast.Call)
              and getattr(n.func, "id", None) == "main_export" for k in n.keywords if k.arg}
    ours = set(neuron_export.main_export_arguments("base", None, Path("out"))) | _our_calls()["main_export"]
    assert ours <= theirs, f"keywords _export does not pass: {sorted(ours - theirs)}"
    # ... and _export's own keywords for what we set (so the two routes mean the same thing).
    assert {"disable_neuron_cache", "inline_weights_to_neff", "instance_type", "auto_cast",
            "auto_cast_type", "compiler_workdir"} <= _parameters(export)


def test_from_pretrained_export_loses_the_artifact_without_a_device() -> None:
    """Why we do not use from_pretrained(export=True): it compiles into a TemporaryDirectory and returns
    None on a machine without a Neuron device. If this changes, the simpler API becomes usable."""
    tree = _source("optimum/neuron/modeling_diffusion.py")
    base = _top_level(tree, "NeuronDiffusionPipelineBase")
    assert isinstance(base, ast.ClassDef)
    export_src = ast.unparse(_method(base, "_export"))
    assert "TemporaryDirectory()" in export_src
    assert "return None" in export_src


def test_lora_and_shape_arguments_are_dataclass_fields() -> None:
    tree = _source("optimum/neuron/utils/argument_utils.py")
    lora_cls = _top_level(tree, "LoRAAdapterArguments")
    shapes_cls = _top_level(tree, "InputShapesArguments")
    assert isinstance(lora_cls, ast.ClassDef) and isinstance(shapes_cls, ast.ClassDef)
    lora = neuron_export.lora_arguments(Path("/lora/pytorch_lora_weights.safetensors"), 1.0)
    assert set(lora) <= _dataclass_fields(lora_cls)
    shapes = neuron_export.input_shape_arguments(1, 1024, 1024, 1)
    assert set(shapes) <= _dataclass_fields(shapes_cls)
    # The mandatory diffusion shapes are built from exactly these names.
    builder = _top_level(_source("optimum/exporters/neuron/utils.py"),
                         "build_stable_diffusion_components_mandatory_shapes")
    assert isinstance(builder, ast.FunctionDef)
    assert set(shapes) <= _parameters(builder)


def test_compiler_arguments_reach_the_compiler() -> None:
    """main_export hands compiler_kwargs to convert.export(**compiler_kwargs)."""
    export = _top_level(_source("optimum/exporters/neuron/convert.py"), "export")
    assert isinstance(export, ast.FunctionDef)
    assert set(neuron_export.compiler_arguments("bf16")) <= _parameters(export)


def test_the_compile_target_is_supported() -> None:
    tree = _source("optimum/neuron/utils/instance.py")
    align = _top_level(tree, "align_compilation_target")
    assert isinstance(align, ast.FunctionDef)
    assert _our_calls()["align_compilation_target"] <= _parameters(align)
    supported = next(n.value for n in tree.body if isinstance(n, ast.Assign)
                     and any(getattr(t, "id", None) == "SUPPORTED_INSTANCE_TYPES" for t in n.targets))
    assert neuron_export.COMPILE_TARGET in ast.literal_eval(supported)


def test_a_compiled_folder_loads_with_from_pretrained() -> None:
    """We load with `NeuronStableDiffusionXLPipeline.from_pretrained(folder)` and no keywords; the class
    is a diffusion pipeline whose `_from_pretrained` takes a model id (optimum's from_pretrained calls it)."""
    assert _our_calls()["from_pretrained"] == set()
    tree = _source("optimum/neuron/modeling_diffusion.py")
    pipeline = _top_level(tree, neuron_export.PIPELINE_CLASS)
    assert isinstance(pipeline, ast.ClassDef)
    assert "NeuronDiffusionPipelineBase" in {ast.unparse(b) for b in pipeline.bases}
    base = _top_level(tree, "NeuronDiffusionPipelineBase")
    assert isinstance(base, ast.ClassDef)
    assert "model_id" in _parameters(_method(base, "_from_pretrained"))
