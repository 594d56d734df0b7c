import pytest

from reranktune.io import InputError
from reranktune.params import FinetuneParams, load_section

from conftest import REPO


def test_repo_params_file_is_valid():
    for section in ("sdg", "prep", "finetune", "eval", "export", "deploy"):
        load_section(section, REPO / "params.yaml")


def test_unknown_key_is_named(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("finetune:\n  learning_rat: 0.1\n")
    with pytest.raises(InputError, match=r"finetune\.learning_rat: unknown key"):
        load_section("finetune", path)


def test_bad_value_is_named(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("prep:\n  embedding:\n    batch_size: -3\n")
    with pytest.raises(InputError, match=r"prep\.embedding\.batch_size"):
        load_section("prep", path)


def test_unknown_section_is_named(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("finetuen:\n  num_epochs: 1\n")
    with pytest.raises(InputError, match="finetuen"):
        load_section("finetune", path)


def test_prompt_template_needs_both_fields():
    with pytest.raises(ValueError, match="passage"):
        FinetuneParams(prompt_template="q: {query}")
