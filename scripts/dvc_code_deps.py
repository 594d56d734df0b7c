"""The source files each DVC stage runs, from its imports, and whether dvc.yaml's code deps are
exactly those.

    # each stage's files, and what dvc.yaml misses or has too many (exit 1)
    python scripts/dvc_code_deps.py
    # rewrite each stage's code deps in dvc.yaml (the other lines stay)
    python scripts/dvc_code_deps.py --write

A stage's script (stages/<name>.py) passes ``reranktune.stages.<name>`` to
``reranktune.stage_cli.run_stage``. The closure starts there: the script's imports, the
``stages`` module's top-level imports, and the imports of the stage function and of the
module's functions it calls (not the other stages'); from then on every ``reranktune``
import is followed, top-level or inside a function (lazy imports run too).
tests/test_dvc_deps.py fails when dvc.yaml misses a file or names one the stage does not run.
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
    """``reranktune`` modules an import node names (``from a import b`` counts a.b when b is a
    module)."""
    names: list[str] = []
    if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
    elif isinstance(node, ast.ImportFrom):
        base = node.module or ""
        if node.level:
            parent = (
                current.split(".")[: -node.level]
                if not current.endswith("__init__")
                else current.split(".")
            )
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
        found.update(
            ".".join(parts[:i]) for i in range(1, len(parts)) if module_file(".".join(parts[:i]))
        )
    return found


def parse(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


STAGES_MODULE = f"{PACKAGE}.stages"
CODE_ROOTS = ("stages/", "src/")  # a dep under these is code; the others are data


def script_path(stage: str) -> Path:
    return REPO / "stages" / f"{stage}.py"


def entry_functions(script: ast.Module) -> set[str]:
    """The functions of reranktune.stages a stage script names: ``stages.<name>`` or
    ``from reranktune.stages import <name>``."""
    names = set()
    for node in ast.walk(script):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id == "stages"
        ):
            names.add(node.attr)
        elif isinstance(node, ast.ImportFrom) and node.module == STAGES_MODULE:
            names.update(alias.name for alias in node.names)
    return names


def _functions_reached(tree: ast.Module, entries: set[str]) -> list[ast.FunctionDef]:
    """``entries`` and the module-level functions of ``tree`` they call, directly or not."""
    defined = {node.name: node for node in tree.body if isinstance(node, ast.FunctionDef)}
    todo, reached = [name for name in entries if name in defined], {}
    while todo:
        name = todo.pop()
        if name in reached:
            continue
        reached[name] = defined[name]
        todo += [
            n.id for n in ast.walk(defined[name]) if isinstance(n, ast.Name) and n.id in defined
        ]
    return list(reached.values())


def stage_closure(stage: str) -> set[Path]:
    """Every file stage ``stage`` can execute: its script and the reranktune modules it reaches."""
    script = script_path(stage)
    script_tree = parse(script)
    stages_tree = parse(module_file(STAGES_MODULE))
    todo = imports(script_tree, "stages")
    files = {script}
    if STAGES_MODULE in todo:
        todo |= imports(stages_tree, STAGES_MODULE, top_level_only=True)
        for function in _functions_reached(stages_tree, entry_functions(script_tree)):
            todo |= imports(function, STAGES_MODULE)
    seen: set[str] = set()
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        seen.add(module)
        path = module_file(module)
        files.add(path)
        if module != STAGES_MODULE:  # its stage functions were followed above, only the stage's own
            todo |= imports(parse(path), module)
    return files


def code_deps(stage: str) -> list[str]:
    """The deps that name exactly the stage's closure: a package folder when it runs every file in
    it, else files."""
    closure = stage_closure(stage)
    folders = sorted(
        {f.parent for f in closure if f.is_relative_to(SRC / PACKAGE) and f.parent != SRC / PACKAGE}
    )
    whole = [d for d in folders if all(f in closure for f in d.rglob("*.py"))]
    whole = [d for d in whole if not any(o in d.parents for o in whole)]
    rest = [
        f for f in closure if f != script_path(stage) and not any(d in f.parents for d in whole)
    ]
    return [str(p.relative_to(REPO)) for p in [script_path(stage), *sorted([*rest, *whole])]]


def declared_deps(stage: str, dvc_file: Path = REPO / "dvc.yaml") -> list[Path]:
    """The stage's deps in ``dvc_file`` (paths relative to the repository; templated ones left
    out)."""
    spec = yaml.safe_load(dvc_file.read_text(encoding="utf-8"))
    return [REPO / dep for dep in spec["stages"][stage].get("deps", []) if "${" not in dep]


def uncovered(stage: str, dvc_file: Path = REPO / "dvc.yaml") -> list[Path]:
    """Files the stage runs that no dep of its (a file, or a folder above it) names."""
    deps = declared_deps(stage, dvc_file)
    return sorted(
        f for f in stage_closure(stage) if not any(f == d or d in f.parents for d in deps)
    )


def unused(stage: str, dvc_file: Path = REPO / "dvc.yaml") -> list[Path]:
    """Code deps (under stages/ or src/) the stage does not run: a file outside its closure, or a
    folder with a Python file outside it (editing that file would rerun the stage for nothing)."""
    closure = stage_closure(stage)
    code = [
        d for d in declared_deps(stage, dvc_file) if str(d.relative_to(REPO)).startswith(CODE_ROOTS)
    ]
    return sorted(
        d
        for d in code
        if (d not in closure)
        if not d.is_dir() or any(f not in closure for f in d.rglob("*.py"))
    )


def rewrite(text: str, stage: str, deps: list[str]) -> str:
    """``text`` (dvc.yaml) with stage ``stage``'s code deps replaced by ``deps``, where its first
    code dep was."""
    lines = text.splitlines(keepends=True)
    start = lines.index(f"  {stage}:\n")
    at = next(i for i in range(start, len(lines)) if lines[i].strip() == "deps:")
    end = next(i for i in range(at + 1, len(lines)) if not lines[i].lstrip().startswith("- "))
    items = lines[at + 1 : end]
    indent = items[0][: len(items[0]) - len(items[0].lstrip())]
    code = [i for i, line in enumerate(items) if line.strip()[2:].startswith(CODE_ROOTS)]
    first = code[0] if code else 0
    kept = [line for i, line in enumerate(items) if i not in code]
    new = kept[:first] + [f"{indent}- {dep}\n" for dep in deps] + kept[first:]
    return "".join(lines[: at + 1] + new + lines[end:])


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    dvc_file = REPO / "dvc.yaml"
    spec = yaml.safe_load(dvc_file.read_text(encoding="utf-8"))
    if argv == ["--write"]:
        text = dvc_file.read_text(encoding="utf-8")
        for stage in spec["stages"]:
            text = rewrite(text, stage, code_deps(stage))
        dvc_file.write_text(text, encoding="utf-8")
    wrong = False
    for stage in spec["stages"]:
        files = sorted(str(p.relative_to(REPO)) for p in stage_closure(stage))
        missing = [str(p.relative_to(REPO)) for p in uncovered(stage)]
        extra = [str(p.relative_to(REPO)) for p in unused(stage)]
        wrong |= bool(missing or extra)
        print(
            f"{stage}: {len(files)} files"
            + (f"; NOT in dvc.yaml: {', '.join(missing)}" if missing else "")
            + (f"; in dvc.yaml but not run: {', '.join(extra)}" if extra else "")
        )
        for name in files:
            print(f"    {name}")
        print("  code deps:\n" + "".join(f"    - {dep}\n" for dep in code_deps(stage)), end="")
    return 1 if wrong else 0


if __name__ == "__main__":
    sys.exit(main())
