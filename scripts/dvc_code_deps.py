"""The source files each DVC stage runs, from its imports, and whether dvc.yaml's deps cover them.

    python scripts/dvc_code_deps.py          # each stage's files, and what dvc.yaml misses (exit 1 if any)

A stage's script (stages/<name>.py) calls ``reranktune.cli.main``, which runs
``reranktune.stages.<name>``. The closure starts there: the script's imports, the CLI
module's top-level imports, the ``stages`` module and the stage function's own imports;
from then on every ``reranktune`` import is followed, top-level or inside a function
(lazy imports run too). tests/test_dvc_deps.py fails when dvc.yaml misses a file.
"""
from __future__ import annotations

import ast
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src"
PACKAGE = "reranktune"


def module_file(module: str) -> Path | None:
    base = SRC / Path(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _imported(node: ast.AST, current: str) -> list[str]:
    """``reranktune`` modules an import node names (``from a import b`` counts a.b when b is a module)."""
    names: list[str] = []
    if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
    elif isinstance(node, ast.ImportFrom):
        base = node.module or ""
        if node.level:
            parent = current.split(".")[: -node.level] if not current.endswith("__init__") else current.split(".")
            base = ".".join([*parent, base]) if base else ".".join(parent)
        names = [base, *(f"{base}.{alias.name}" for alias in node.names)]
    found = []
    for name in names:
        if name.split(".")[0] == PACKAGE and module_file(name):
            found.append(name)
    return found


def imports(tree: ast.AST, module: str, top_level_only: bool = False) -> set[str]:
    nodes = tree.body if top_level_only else ast.walk(tree)
    found: set[str] = set()
    for node in nodes:
        found.update(_imported(node, module))
    # importing a.b.c runs a/__init__.py and a/b/__init__.py too
    for name in list(found):
        parts = name.split(".")
        found.update(".".join(parts[:i]) for i in range(1, len(parts)) if module_file(".".join(parts[:i])))
    return found


def parse(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def stage_closure(stage: str) -> set[Path]:
    """Every file stage ``stage`` can execute: its script and the reranktune modules it reaches."""
    script = REPO / "stages" / f"{stage}.py"
    cli = f"{PACKAGE}.cli"
    stages_module = f"{PACKAGE}.stages"
    stages_tree = parse(module_file(stages_module))
    function = next(n for n in stages_tree.body if isinstance(n, ast.FunctionDef) and n.name == stage)
    todo = (imports(parse(script), "stages") - {cli}) | imports(parse(module_file(cli)), cli, top_level_only=True)
    todo |= imports(stages_tree, stages_module, top_level_only=True) | imports(function, stages_module)
    files = {script, module_file(cli), module_file(stages_module)}
    seen: set[str] = set()
    while todo:
        module = todo.pop()
        if module in seen or module in (cli, stages_module):
            continue
        seen.add(module)
        path = module_file(module)
        files.add(path)
        todo |= imports(parse(path), module)
    return files


def declared_deps(stage: str, dvc_file: Path = REPO / "dvc.yaml") -> list[Path]:
    """The stage's deps in ``dvc_file`` (paths relative to the repository; templated ones left out)."""
    spec = yaml.safe_load(dvc_file.read_text(encoding="utf-8"))
    return [REPO / dep for dep in spec["stages"][stage].get("deps", []) if "${" not in dep]


def uncovered(stage: str, dvc_file: Path = REPO / "dvc.yaml") -> list[Path]:
    """Files the stage runs that no dep of its (a file, or a folder above it) names."""
    deps = declared_deps(stage, dvc_file)
    return sorted(f for f in stage_closure(stage) if not any(f == d or d in f.parents for d in deps))


def main() -> int:
    spec = yaml.safe_load((REPO / "dvc.yaml").read_text(encoding="utf-8"))
    missing_any = False
    for stage in spec["stages"]:
        files = sorted(str(p.relative_to(REPO)) for p in stage_closure(stage))
        missing = [str(p.relative_to(REPO)) for p in uncovered(stage)]
        missing_any |= bool(missing)
        print(f"{stage}: {len(files)} files" + (f"; NOT in dvc.yaml: {', '.join(missing)}" if missing else ""))
        for name in files:
            print(f"    {name}")
    return 1 if missing_any else 0


if __name__ == "__main__":
    sys.exit(main())
