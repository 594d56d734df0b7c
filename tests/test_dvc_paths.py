"""The files each stage function in src/reranktune/stages.py reads and writes are the ones dvc.yaml
declares.

A stage's paths are the ``Path`` constants of reranktune.stages that its function (and the
module's functions it calls) names. Each one must be a dep of the stage when another stage
outputs it, and an output of the stage (``outs``, ``metrics`` or ``plots``) otherwise; each
data path dvc.yaml declares for the stage must be one of them or lie under or over one.
Paths that come from params.yaml (``${section.key}``) are not checked here.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml
from conftest import REPO
from test_dvc_deps import STAGES, load_tool

from reranktune import stages as stages_module

# the exceptions, each with its reason
NOT_DECLARED = {
    (
        "finetune",
        "CHECKPOINT_DIR",
    ): "intermediate checkpoints, kept out of DVC (.gitignore) so a killed run resumes; "
    "an out would be deleted before every run",
    (
        "finetune",
        "VAL_FILE",
    ): "written only when prep has a val split, and a DVC dep must exist; prep rewrites "
    "train.json, a dep, in the same run",
}
NOT_NAMED = {
    (
        "finetune",
        "data/prep/corpus",
    ): "the passages train.json's records point at (its corpus.path)",
}


def path_constants() -> dict[str, Path]:
    return {
        name: value
        for name, value in vars(stages_module).items()
        if name.isupper() and isinstance(value, Path)
    }


def used_constants(stage: str) -> set[str]:
    """The path constants stage ``stage``'s function and the helpers it calls name."""
    tool = load_tool()
    tree = tool.parse(REPO / "src" / "reranktune" / "stages.py")
    constants = path_constants()
    return {
        node.id
        for function in tool._functions_reached(tree, {stage})
        for node in ast.walk(function)
        if isinstance(node, ast.Name) and node.id in constants
    }


def _entries(items: list) -> list[Path]:
    paths = [item if isinstance(item, str) else next(iter(item)) for item in items or []]
    return [Path(p) for p in paths if "${" not in p and not p.startswith(("src/", "stages/"))]


def declared(spec: dict, stage: str) -> tuple[list[Path], list[Path]]:
    """(data deps, outputs) of ``stage`` in a parsed dvc.yaml; code deps and templated paths left
    out."""
    entry = spec["stages"][stage]
    return _entries(entry.get("deps")), [
        p for key in ("outs", "metrics", "plots") for p in _entries(entry.get(key))
    ]


def covers(declared_paths: list[Path], path: Path) -> bool:
    return any(path == d or d in path.parents for d in declared_paths)


def drift(spec: dict, stage: str) -> list[str]:
    """Every disagreement between stages.py and ``spec`` (a parsed dvc.yaml) for ``stage``, as
    sentences."""
    constants = path_constants()
    deps, outs = declared(spec, stage)
    used = used_constants(stage)
    problems = []
    for name in sorted(used):
        if (stage, name) in NOT_DECLARED:
            continue
        path = constants[name]
        producers = [
            other
            for other in spec["stages"]
            if other != stage and covers(declared(spec, other)[1], path)
        ]
        if producers and not covers(deps, path):
            problems.append(f"{name} ({path}) is {producers[0]}'s output but not a dep of {stage}")
        elif (
            not producers
            and not covers(outs, path)
            and not any(path in out.parents for out in outs)
        ):
            # a folder the stage writes into (dvclive's metrics/finetune) counts when files in it
            # are declared
            problems.append(
                f"{name} ({path}) is written by {stage} but not among its outs, metrics or plots"
            )
    named = [constants[name] for name in used]
    for path in deps + outs:
        if (stage, str(path)) not in NOT_NAMED and not any(
            path == p or p in path.parents or path in p.parents for p in named
        ):
            problems.append(
                f"{path} is declared for {stage} but stages.{stage} names no path at or around it"
            )
    return problems


def dvc_spec() -> dict:
    return yaml.safe_load((REPO / "dvc.yaml").read_text(encoding="utf-8"))


@pytest.mark.parametrize("stage", STAGES)
def test_stage_paths_in_stages_py_and_dvc_yaml_agree(stage):
    assert drift(dvc_spec(), stage) == []


def test_every_path_constant_belongs_to_a_stage():
    """A path constant no stage function names would escape the check above."""
    used = set().union(*(used_constants(stage) for stage in STAGES))
    assert set(path_constants()) - used == set()


def test_the_exceptions_are_still_needed():
    constants = path_constants()
    for stage, name in NOT_DECLARED:
        assert name in used_constants(stage)
        deps, outs = declared(dvc_spec(), stage)
        assert not covers(deps + outs, constants[name]), (
            f"{name} is declared now: drop it from NOT_DECLARED"
        )
    for stage, path in NOT_NAMED:
        assert Path(path) in sum(declared(dvc_spec(), stage), [])


def test_a_renamed_output_is_caught():
    spec = dvc_spec()
    spec["stages"]["sdg"]["outs"][0] = "data/sdg/questions.jsonl"
    assert drift(spec, "sdg") == [
        "SDG_OUTPUT (data/sdg/qa.jsonl) is written by sdg but not among its outs, metrics or plots",
        "data/sdg/questions.jsonl is declared for sdg but stages.sdg names no path at or around it",
    ]


def test_a_dep_left_out_is_caught():
    spec = dvc_spec()
    spec["stages"]["export"]["deps"].remove("data/prep/eval_beir")
    assert drift(spec, "export") == [
        "BEIR_DIR (data/prep/eval_beir) is prep's output but not a dep of export"
    ]
