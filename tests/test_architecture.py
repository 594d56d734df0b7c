"""The layering: stage packages import the shared core downward, never each other."""

import ast

import pytest
from conftest import REPO

PACKAGE = REPO / "src" / "reranktune"
STAGE_PACKAGES = ("sdg", "prep", "finetune", "evaluation", "export", "serve", "deploy")
ALLOWED = {("deploy", "serve")}  # deploy starts the server


def imported_modules(path) -> set[str]:
    """Every reranktune module a file imports, at the top or inside a function."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if (
            isinstance(node, ast.ImportFrom)
            and node.module
            and node.module.startswith("reranktune")
        ):
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names if alias.name.startswith("reranktune")}
    return names


@pytest.mark.parametrize("package", STAGE_PACKAGES)
def test_no_stage_package_imports_another(package):
    crossings = []
    for path in sorted((PACKAGE / package).rglob("*.py")):
        for module in imported_modules(path):
            target = module.split(".")[1] if "." in module else ""
            if target in STAGE_PACKAGES and target != package and (package, target) not in ALLOWED:
                crossings.append(f"{path.relative_to(REPO)} imports {module}")
    assert not crossings


def test_the_core_imports_no_stage_package():
    core = [
        p
        for p in PACKAGE.rglob("*.py")
        if p.relative_to(PACKAGE).parts[0] not in STAGE_PACKAGES
        and p.name not in ("cli.py", "stages.py", "stage_cli.py")
    ]
    crossings = [
        f"{p.relative_to(REPO)} imports {m}"
        for p in core
        for m in imported_modules(p)
        if "." in m and m.split(".")[1] in STAGE_PACKAGES
    ]
    assert not crossings
