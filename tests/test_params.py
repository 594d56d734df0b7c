import ast

import pytest
import yaml
from conftest import REPO

from reranktune.io import InputError
from reranktune.params import SECTIONS, FinetuneParams, load_section

STAGES = ("sdg", "prep", "finetune", "eval", "export")
SHARED = ("retrieval", "model")


def test_repo_params_file_is_valid():
    for section in SECTIONS:
        load_section(section, REPO / "params.yaml")


@pytest.mark.parametrize("section", SECTIONS)
def test_the_models_defaults_are_params_yaml(section):
    """params.yaml is the recipe; a key left out of a params file means the same value."""
    assert (
        SECTIONS[section]().model_dump() == load_section(section, REPO / "params.yaml").model_dump()
    )


def _sections_read(stage: str) -> set[str]:
    """The params sections stages.py's function for ``stage`` loads."""
    tree = ast.parse((REPO / "src" / "reranktune" / "stages.py").read_text())
    function = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == stage)
    return {
        call.args[0].value
        for call in ast.walk(function)
        if isinstance(call, ast.Call)
        and getattr(call.func, "id", None) == "load_section"
        and isinstance(call.args[0], ast.Constant)
    }


@pytest.mark.parametrize("stage", STAGES)
def test_each_stage_reads_its_own_section_and_shared_ones_all_declared_in_dvc_yaml(stage):
    declared = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"][stage]["params"]
    declared_sections = {key.split(".")[0] for key in declared}
    read = _sections_read(stage)
    assert stage in read and read <= {stage, *SHARED}, (
        f"{stage} reads another stage's section: {read}"
    )
    assert read == declared_sections, (
        f"dvc.yaml declares {sorted(declared)} for {stage}, which reads {sorted(read)}"
    )


def test_unknown_key_is_named(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("finetune:\n  learning_rat: 0.1\n")
    with pytest.raises(InputError, match=r"finetune\.learning_rat: unknown key"):
        load_section("finetune", path)


def test_a_moved_key_says_where_it_went(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("prep:\n  embedding:\n    model: x\n")
    with pytest.raises(
        InputError, match=r"prep\.embedding: unknown key \(now retrieval\.embedding\)"
    ):
        load_section("prep", path)


def test_bad_value_is_named(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("retrieval:\n  embedding:\n    batch_size: -3\n")
    with pytest.raises(InputError, match=r"retrieval\.embedding\.batch_size"):
        load_section("retrieval", path)


def test_unknown_section_is_named(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("finetuen:\n  num_epochs: 1\n")
    with pytest.raises(InputError, match="finetuen"):
        load_section("finetune", path)


def test_prompt_template_needs_both_fields():
    with pytest.raises(ValueError, match="passage"):
        FinetuneParams(prompt_template="q: {query}")
