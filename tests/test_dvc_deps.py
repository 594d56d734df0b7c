"""dvc.yaml's code deps are exactly what each stage imports: a code change reruns every stage it
affects, and no other."""

import importlib.util

import pytest
from conftest import REPO


def load_tool():
    spec = importlib.util.spec_from_file_location(
        "dvc_code_deps", REPO / "scripts" / "dvc_code_deps.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


STAGES = ("sdg", "prep", "finetune", "eval", "export")


@pytest.mark.parametrize("stage", STAGES)
def test_every_file_a_stage_imports_is_one_of_its_dvc_deps(stage):
    tool = load_tool()
    missing = [str(p.relative_to(REPO)) for p in tool.uncovered(stage)]
    assert not missing, (
        f"dvc.yaml stage {stage!r} runs these files but does not depend on them: {missing}"
    )


@pytest.mark.parametrize("stage", STAGES)
def test_every_code_dep_of_a_stage_is_code_it_runs(stage):
    tool = load_tool()
    extra = [str(p.relative_to(REPO)) for p in tool.unused(stage)]
    assert not extra, (
        f"dvc.yaml stage {stage!r} depends on code it never imports: {extra} "
        "(python scripts/dvc_code_deps.py --write lists exactly what it runs)"
    )


@pytest.mark.parametrize("stage", STAGES)
def test_the_stage_script_runs_its_own_stage_function(stage):
    tool = load_tool()
    assert tool.entry_functions(tool.parse(tool.script_path(stage))) == {stage}


def test_the_closure_follows_lazy_imports_and_only_the_stages_own_function():
    tool = load_tool()
    rel = {stage: {str(p.relative_to(REPO)) for p in tool.stage_closure(stage)} for stage in STAGES}
    # export's gate reranks the shared first stage (a function-level import in stages.export)
    assert "src/reranktune/retrieval/first_stage.py" in rel["export"]
    assert (
        "src/reranktune/retrieval/index.py" in rel["prep"]
        and "src/reranktune/retrieval/index.py" in rel["eval"]
    )
    # stages.py's other functions' lazy imports are not this stage's code
    assert "src/reranktune/prep/run.py" not in rel["sdg"]
    assert not any(
        path.startswith("src/reranktune/prep/") for path in rel["finetune"] | rel["eval"]
    )
    # the stages do not go through the CLI: its other commands (serve, deploy, compare) are no
    # stage's code
    for paths in rel.values():
        assert "src/reranktune/stage_cli.py" in paths and "src/reranktune/stages.py" in paths
        assert "src/reranktune/cli.py" not in paths
        assert not any(
            path.startswith(("src/reranktune/serve/", "src/reranktune/deploy/")) for path in paths
        )
        assert "src/reranktune/evaluation/compare.py" not in paths


def test_a_missing_dep_is_reported(tmp_path):
    import yaml

    tool = load_tool()
    spec = yaml.safe_load((REPO / "dvc.yaml").read_text())
    spec["stages"]["finetune"]["deps"].remove("src/reranktune/retrieval/bm25.py")
    (tmp_path / "dvc.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    assert [p.name for p in tool.uncovered("finetune", tmp_path / "dvc.yaml")] == ["bm25.py"]


def test_a_dep_the_stage_does_not_run_is_reported(tmp_path):
    import yaml

    tool = load_tool()
    spec = yaml.safe_load((REPO / "dvc.yaml").read_text())
    # the CLI module, a folder with one file eval never imports (compare.py), and another stage's
    # code
    spec["stages"]["eval"]["deps"] += [
        "src/reranktune/cli.py",
        "src/reranktune/evaluation",
        "src/reranktune/prep",
    ]
    (tmp_path / "dvc.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    assert [str(p.relative_to(REPO)) for p in tool.unused("eval", tmp_path / "dvc.yaml")] == [
        "src/reranktune/cli.py",
        "src/reranktune/evaluation",
        "src/reranktune/prep",
    ]


def test_write_keeps_everything_but_the_code_deps(tmp_path):
    """--write replaces a stage's code deps in place; data deps, params, outs and comments stay as
    they are."""
    import yaml

    tool = load_tool()
    text = (REPO / "dvc.yaml").read_text()
    spec = yaml.safe_load(text)
    scrambled = text.replace("      - src/reranktune/retrieval/bm25.py\n", "", 1).replace(
        "      - stages/prep.py\n", "      - stages/prep.py\n      - src/reranktune/cli.py\n", 1
    )
    rewritten = scrambled
    for stage in STAGES:
        rewritten = tool.rewrite(rewritten, stage, tool.code_deps(stage))
    (tmp_path / "dvc.yaml").write_text(rewritten)
    assert [line for line in rewritten.splitlines() if line.lstrip().startswith("#")] == [
        line for line in text.splitlines() if line.lstrip().startswith("#")
    ]
    new = yaml.safe_load(rewritten)
    for stage in STAGES:
        assert not tool.uncovered(stage, tmp_path / "dvc.yaml") and not tool.unused(
            stage, tmp_path / "dvc.yaml"
        )
        data = [d for d in spec["stages"][stage]["deps"] if not d.startswith(tool.CODE_ROOTS)]
        assert [
            d for d in new["stages"][stage]["deps"] if not d.startswith(tool.CODE_ROOTS)
        ] == data
        assert {k: v for k, v in new["stages"][stage].items() if k != "deps"} == {
            k: v for k, v in spec["stages"][stage].items() if k != "deps"
        }
