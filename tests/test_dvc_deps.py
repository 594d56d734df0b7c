"""dvc.yaml's code deps cover what each stage imports, so a code change reruns every stage it affects."""
import importlib.util

import pytest

from conftest import REPO


def load_tool():
    spec = importlib.util.spec_from_file_location("dvc_code_deps", REPO / "scripts" / "dvc_code_deps.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


STAGES = ("sdg", "prep", "finetune", "eval", "export")


@pytest.mark.parametrize("stage", STAGES)
def test_every_file_a_stage_imports_is_one_of_its_dvc_deps(stage):
    tool = load_tool()
    missing = [str(p.relative_to(REPO)) for p in tool.uncovered(stage)]
    assert not missing, f"dvc.yaml stage {stage!r} runs these files but does not depend on them: {missing}"


def test_the_closure_follows_lazy_imports_and_stops_at_the_cli():
    tool = load_tool()
    rel = {stage: {str(p.relative_to(REPO)) for p in tool.stage_closure(stage)} for stage in STAGES}
    # export reaches eval's code through its gate (a function-level import in export/run.py)
    assert "src/reranktune/evaluation/first_stage.py" in rel["export"]
    assert "src/reranktune/retrieval.py" in rel["prep"] and "src/reranktune/retrieval.py" in rel["eval"]
    # the CLI's other commands (serve, deploy) are not part of any stage
    assert not any(path.startswith("src/reranktune/serve/") for paths in rel.values() for path in paths)
    assert "src/reranktune/retrieval.py" not in rel["sdg"]


def test_a_missing_dep_is_reported(tmp_path):
    import yaml

    tool = load_tool()
    spec = yaml.safe_load((REPO / "dvc.yaml").read_text())
    spec["stages"]["finetune"]["deps"].remove("src/reranktune/lexical.py")
    (tmp_path / "dvc.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    assert [p.name for p in tool.uncovered("finetune", tmp_path / "dvc.yaml")] == ["lexical.py"]
