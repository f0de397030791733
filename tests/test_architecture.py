"""The layout's rules, read from the source (nothing is run): stages are thin and independent,
the library is layered with imports pointing down, no first-party import hides in a function,
and every stage's code deps in dvc.yaml are exactly the modules its command imports."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from compress.core.artifacts import Artifacts

REPO_ROOT = Path(__file__).resolve().parents[1]
FIRST_PARTY = ("compress", "stages", "flows")

# The library's packages bottom-up: a module may import modules of its own package (without
# cycles) and of the packages before it, never of one after it.
PACKAGES = [
    "runtime",  # the model contract, images, runners, Classifier, compress-predict: no torch
    "core",  # errors, atomic writes, the artifact catalogue, distributed processes
    "config",  # the params schema, a module per section, and reading params.yaml
    "data",  # sources, shards, loaders, data checks, drift
    "models",  # model references, checkpoints, ONNX export, the ONNX teacher
    "evaluation",  # quality figures, uncertainty, comparison, decisions, benchmarks, report
    "train",  # the training loop, KD losses, the distillation objective
    "compression",  # students, pruning, quantization, INT8 ONNX, sensitivity
    "search",  # the recipe search's trials
    "steps",  # one function per DVC stage
    "registry",  # GTO versions, rollback, the decisions log
    "commands",  # the stage runner and the `compress` command
]
# What the runtime may import besides the standard library: its distribution's dependencies.
RUNTIME_THIRD_PARTY = {"numpy", "PIL", "onnxruntime", "openvino"}


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


def package_of(name: str) -> str:
    """The library package of a module `compress.<package>.<module>`, or an error naming it."""
    parts = name.split(".")
    if len(parts) < 3 or parts[1] not in PACKAGES:
        raise AssertionError(
            f"module '{name}' is in no package of PACKAGES in tests/test_architecture.py: move it "
            "into the package of its job, or add a package there"
        )
    return parts[1]


def package_import_offenders(root: Path = REPO_ROOT) -> list[str]:
    """Imports that point up the package order, or into flows or stages."""
    offenders = []
    for name, path in first_party_modules(root).items():
        if not name.startswith("compress.") or path.name == "__init__.py":
            continue
        for imported, line, _ in imports(path, root):
            if imported.startswith(("flows", "stages")):
                offenders.append(f"{name} imports {imported} (line {line})")
            elif module_path(imported, root).name != "__init__.py":
                low, high = package_of(imported), package_of(name)
                if PACKAGES.index(low) > PACKAGES.index(high):
                    offenders.append(
                        f"{name} imports {imported} (line {line}): package '{high}' may not "
                        f"import '{low}', which comes after it in PACKAGES"
                    )
    return offenders


def package_cycles(root: Path = REPO_ROOT) -> list[list[str]]:
    """Import cycles among the modules of one package, each as the chain that closes it."""
    graph = {
        name: [imported for imported, _, _ in imports(path, root) if imported != name]
        for name, path in first_party_modules(root).items()
        if name.startswith("compress.") and path.name != "__init__.py"
    }
    cycles, done = [], set()

    def visit(name: str, chain: list[str]) -> None:
        if name in chain:
            cycles.append(chain[chain.index(name) :] + [name])
            return
        if name in done or name not in graph:
            return
        for imported in graph[name]:
            if package_of(imported) == package_of(name):
                visit(imported, [*chain, name])
        done.add(name)

    for name in graph:
        visit(name, [])
    return cycles


def torch_chains(root: Path = REPO_ROOT) -> list[str]:
    """For each runtime module that reaches torch through first-party imports, the chain."""
    chains = []
    for name in sorted(first_party_modules(root)):
        if not name.startswith("compress.runtime."):
            continue
        todo, parents = [name], {name: None}
        while todo:
            current = todo.pop(0)
            third_party = third_party_imports(module_path(current, root))
            if "torch" in third_party:
                chain, step = [], current
                while step is not None:
                    chain.insert(0, step)
                    step = parents[step]
                chains.append(" -> ".join([*chain, "torch"]))
                break
            for imported, _, _ in imports(module_path(current, root), root):
                if imported not in parents:
                    parents[imported] = current
                    todo.append(imported)
    return chains


def third_party_imports(path: Path) -> set[str]:
    """Top-level names of the non-first-party modules a file imports (the standard library's
    included), wherever the import sits."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found - {*FIRST_PARTY, "__future__"}


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
    spec["stages"]["baseline"]["deps"].remove("compress/evaluation/quality.py")
    spec["stages"]["validate_teacher"]["deps"].append("compress/train/losses.py")
    (tmp_path / "dvc.yaml").write_text(yaml.safe_dump(spec))
    assert dependency_problems(tmp_path) == [
        "stage 'baseline': add `compress/evaluation/quality.py` to its deps in dvc.yaml (imported)",
        "stage 'validate_teacher': remove `compress/train/losses.py` from its deps in dvc.yaml "
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


def test_library_imports_point_down_the_packages() -> None:
    assert package_import_offenders() == []


def test_no_import_cycle_inside_a_package() -> None:
    assert package_cycles() == []


def test_an_upward_import_between_packages_is_named(tmp_path: Path) -> None:
    _copy_sources(tmp_path)
    checks = tmp_path / "compress" / "data" / "checks.py"
    checks.write_text("from compress.train.losses import kd_loss\n" + checks.read_text())
    assert package_import_offenders(tmp_path) == [
        "compress.data.checks imports compress.train.losses (line 1): package 'data' may not "
        "import 'train', which comes after it in PACKAGES"
    ]


def test_a_cycle_inside_a_package_is_named(tmp_path: Path) -> None:
    _copy_sources(tmp_path)
    shards = tmp_path / "compress" / "data" / "shards.py"
    shards.write_text("from compress.data.loaders import load_info\n" + shards.read_text())
    cycles = package_cycles(tmp_path)
    assert ["compress.data.loaders", "compress.data.shards", "compress.data.loaders"] in [
        cycle[-3:] for cycle in cycles
    ]


def test_runtime_reaches_no_torch() -> None:
    assert torch_chains() == []


def test_runtime_imports_only_its_own_dependencies() -> None:
    allowed = RUNTIME_THIRD_PARTY | set(sys.stdlib_module_names)
    offenders = {
        name: sorted(third_party_imports(path) - allowed)
        for name, path in first_party_modules().items()
        if name.startswith("compress.runtime") and third_party_imports(path) - allowed
    }
    assert offenders == {}


def test_torch_reaching_the_runtime_is_named_with_its_chain(tmp_path: Path) -> None:
    """torch through a pipeline module the runtime imports is named link by link."""
    _copy_sources(tmp_path)
    images = tmp_path / "compress" / "runtime" / "images.py"
    images.write_text("from compress.data.loaders import load_info\n" + images.read_text())
    chains = torch_chains(tmp_path)
    assert "compress.runtime.images -> compress.data.loaders -> torch" in chains
    assert (
        "compress.runtime.classifier -> compress.runtime.images -> compress.data.loaders -> torch"
        in chains
    )


def test_importing_the_runtime_loads_neither_torch_nor_the_pipeline() -> None:
    """The same, measured: a fresh interpreter that imports every runtime module."""
    modules = [name for name in first_party_modules() if name.startswith("compress.runtime.")]
    code = (
        f"import sys; import {', '.join(modules)}; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('torch', 'torchvision', 'nncf', 'openvino', 'onnx', 'scipy', 'pandas') "
        "or (m.startswith('compress.') and not m.startswith('compress.runtime'))))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"


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
