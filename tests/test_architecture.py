"""The layout's rules, read from the source (nothing is run): stages are thin and independent,
the library is layered with imports pointing down, no first-party import hides in a function,
and every stage's code deps in dvc.yaml are exactly the modules its command imports."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml

from compress.artifacts import Artifacts

REPO_ROOT = Path(__file__).resolve().parents[1]
FIRST_PARTY = ("compress", "stages", "flows")

# The library bottom-up: a module may import only modules of a lower layer.
LAYERS: list[set[str]] = [
    {"compress.errors"},
    {"compress.atomic", "compress.artifacts", "compress.shards", "compress.distributed"},
    {"compress.params", "compress.contract", "compress.uncertainty"},
    {"compress.search_params"},
    {"compress.params_file"},
    {
        "compress.data",
        "compress.sources",
        "compress.comparison",
        "compress.quality",
        "compress.decision",
        "compress.report",
        "compress.int8_onnx",
        "compress.onnx_export",
        "compress.onnx_runtime",
        "compress.models",
        "compress.losses",
    },
    {
        "compress.data_checks",
        "compress.ort_memory",
        "compress.pruning",
        "compress.training",
        "compress.runtimes",
        "compress.onnx_teacher",
        "compress.recipe_search",
    },
    {"compress.benchmark", "compress.checkpoints", "compress.predict", "compress.drift"},
    {"compress.distillation", "compress.quantization", "compress.students"},
    {"compress.sensitivity"},
    {
        "compress.steps.prepare",
        "compress.steps.baseline",
        "compress.steps.validate_teacher",
        "compress.steps.distill",
        "compress.steps.prune",
        "compress.steps.quantize",
        "compress.steps.evaluate",
    },
    {"compress.runner"},
    {"compress.cli"},
]


def module_name(path: Path, root: Path = REPO_ROOT) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def module_path(name: str, root: Path = REPO_ROOT) -> Path | None:
    base = root.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def first_party_modules(root: Path = REPO_ROOT) -> dict[str, Path]:
    return {
        module_name(path, root): path
        for package in FIRST_PARTY
        for path in sorted((root / package).rglob("*.py"))
    }


def imports(path: Path, root: Path = REPO_ROOT) -> list[tuple[str, int, bool]]:
    """(first-party module, line, inside a function) for every import in a file.
    `from a.b import c` names module a.b.c when that is a module, else a.b."""
    found = []
    tree = ast.parse(path.read_text())
    functions = [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
    ]
    nested = {id(inner) for fn in functions for inner in ast.walk(fn) if inner is not fn}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [
                f"{node.module}.{alias.name}"
                if module_path(f"{node.module}.{alias.name}", root)
                else node.module
                for alias in node.names
            ]
        else:
            continue
        for name in names:
            if name.split(".")[0] in FIRST_PARTY and module_path(name, root):
                found.append((name, node.lineno, id(node) in nested))
    return found


def import_closure(start: str, root: Path = REPO_ROOT) -> set[str]:
    """The first-party modules `start` imports, directly or not, itself included."""
    seen, todo = set(), [start]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        todo += [imported for imported, _, _ in imports(module_path(name, root), root)]
    return seen


def code_files(modules: set[str], root: Path = REPO_ROOT) -> set[str]:
    """Source files of the modules; package __init__ files hold no code and are left out."""
    return {
        str(module_path(name, root).relative_to(root))
        for name in modules
        if module_path(name, root).name != "__init__.py"
    }


def dependency_problems(root: Path = REPO_ROOT) -> list[str]:
    """For each dvc.yaml stage run as `python -m stages.<name>`, the code deps to add or remove."""
    problems = []
    stages = yaml.safe_load((root / "dvc.yaml").read_text())["stages"]
    for stage, spec in stages.items():
        module = spec["cmd"].removeprefix("python -m ").split()[0]
        needed = code_files(import_closure(module, root), root)
        declared = {dep for dep in spec.get("deps", []) if dep.endswith(".py")}
        for missing in sorted(needed - declared):
            problems.append(f"stage '{stage}': add `{missing}` to its deps in dvc.yaml (imported)")
        for extra in sorted(declared - needed):
            problems.append(
                f"stage '{stage}': remove `{extra}` from its deps in dvc.yaml (not imported)"
            )
    return problems


def layer_of(name: str) -> int:
    for index, layer in enumerate(LAYERS):
        if name in layer:
            return index
    raise AssertionError(
        f"module '{name}' has no layer: add it to LAYERS in tests/test_architecture.py"
    )


def test_every_stage_deps_are_exactly_the_code_it_imports() -> None:
    assert dependency_problems() == []


def _copy_sources(destination: Path) -> None:
    for folder in FIRST_PARTY:
        for path in (REPO_ROOT / folder).rglob("*.py"):
            target = destination / path.relative_to(REPO_ROOT)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(path.read_text())


def stage_import_offenders(root: Path = REPO_ROOT) -> list[str]:
    return [
        f"{name} imports {imported} (line {line})"
        for name, path in first_party_modules(root).items()
        for imported, line, _ in imports(path, root)
        if imported.startswith("stages.")
    ]


def test_a_missing_or_extra_dep_is_named(tmp_path: Path) -> None:
    """The check itself fails on a copy of the repository with one dep removed and one added."""
    _copy_sources(tmp_path)
    spec = yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text())
    spec["stages"]["baseline"]["deps"].remove("compress/quality.py")
    spec["stages"]["validate_teacher"]["deps"].append("compress/losses.py")
    (tmp_path / "dvc.yaml").write_text(yaml.safe_dump(spec))
    assert dependency_problems(tmp_path) == [
        "stage 'baseline': add `compress/quality.py` to its deps in dvc.yaml (imported)",
        "stage 'validate_teacher': remove `compress/losses.py` from its deps in dvc.yaml "
        "(not imported)",
    ]


def test_no_stage_imports_a_stage_and_nothing_imports_stages() -> None:
    offenders = stage_import_offenders()
    assert offenders == [], "stages are entry points; import the library (compress) instead"


def test_a_stage_importing_a_stage_is_named(tmp_path: Path) -> None:
    _copy_sources(tmp_path)
    prune = tmp_path / "stages" / "prune.py"
    prune.write_text("from stages.distill import main as distill_main\n" + prune.read_text())
    assert stage_import_offenders(tmp_path) == ["stages.prune imports stages.distill (line 1)"]


def test_library_imports_point_down_the_layers() -> None:
    offenders = []
    for name, path in first_party_modules().items():
        if not name.startswith("compress.") or path.name == "__init__.py":
            continue
        for imported, line, _ in imports(path):
            if imported.startswith(("flows", "stages")):
                offenders.append(f"{name} imports {imported} (line {line})")
            elif module_path(imported).name != "__init__.py" and (
                layer_of(imported) >= layer_of(name)
            ):
                offenders.append(
                    f"{name} (layer {layer_of(name)}) imports {imported} "
                    f"(layer {layer_of(imported)}, line {line})"
                )
    assert offenders == []


def test_no_first_party_import_inside_a_function() -> None:
    offenders = [
        f"{path.relative_to(REPO_ROOT)}:{line} imports {imported} inside a function"
        for path in [*first_party_modules().values(), *(REPO_ROOT / "tests").glob("*.py")]
        for imported, line, inside in imports(path)
        if inside
    ]
    assert offenders == []


def test_package_init_files_hold_no_code() -> None:
    for path in first_party_modules().values():
        if path.name == "__init__.py":
            body = ast.parse(path.read_text()).body
            docstring_only = all(
                isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) for node in body
            )
            assert docstring_only, f"{path}: keep code out of package __init__ files"


@pytest.mark.parametrize(
    "stage", sorted(yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text())["stages"])
)
def test_stage_is_one_main_calling_the_library(stage: str) -> None:
    tree = ast.parse((REPO_ROOT / "stages" / f"{stage}.py").read_text())
    functions = [node.name for node in tree.body if isinstance(node, ast.FunctionDef)]
    assert functions == ["main"], f"stages/{stage}.py defines {functions}; keep only main()"


def test_catalogue_names_every_out_metric_and_plot_of_dvc_yaml() -> None:
    declared = set()
    for spec in yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text())["stages"].values():
        for kind in ("outs", "metrics", "plots"):
            for entry in spec.get(kind, []):
                declared.add(next(iter(entry)) if isinstance(entry, dict) else entry)
    assert {str(path) for path in Artifacts.outs().values()} == declared


def test_size_limits() -> None:
    """Modules of one job (<= 300 lines), functions readable at once (<= 80 lines)."""
    offenders = []
    for name, path in first_party_modules().items():
        lines = path.read_text().splitlines()
        if len(lines) > 300:
            offenders.append(f"{name}: {len(lines)} lines")
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef) and node.end_lineno - node.lineno + 1 > 80:
                offenders.append(f"{name}.{node.name}: {node.end_lineno - node.lineno + 1} lines")
    assert offenders == []
