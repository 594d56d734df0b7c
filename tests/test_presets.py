"""Params presets: validated against params.yaml, turned into `dvc exp run -S` overrides."""

from __future__ import annotations

import pytest
import yaml
from conftest import REPO
from hydra.core.override_parser.overrides_parser import OverridesParser

from reranktune.cli import main
from reranktune.io import InputError
from reranktune.presets import check_preset, load_preset, set_args

GPU_PRESET = REPO / "params" / "gpu-reference.yaml"


def _parsed(args: list[str]) -> dict:
    """What DVC's override parser (Hydra's) makes of each -S value."""
    parser = OverridesParser.create()
    overrides = [
        parser.parse_override(arg) for flag, arg in zip(args[::2], args[1::2]) if flag == "-S"
    ]
    return {o.key_or_group: o.value() for o in overrides}


def test_gpu_reference_preset_is_valid_and_holds_the_reference_defaults():
    preset = load_preset(GPU_PRESET)
    check_preset(preset, GPU_PRESET, REPO / "params.yaml")
    values = _parsed(set_args(preset))
    assert values["model.base_model"] == "nvidia/llama-nemotron-rerank-1b-v2"
    assert values["retrieval.embedding.model"] == "nvidia/llama-nemotron-embed-1b-v2"
    assert (
        values["model.trust_remote_code"] is True
        and values["retrieval.embedding.trust_remote_code"] is True
    )
    assert values["finetune.global_batch_size"] == 128
    assert values["finetune.learning_rate"] == 3e-6
    assert values["finetune.mixed_precision"] == "auto"
    assert values["eval.k_values"] == [1, 5, 10, 100]
    assert values["finetune.pretokenize"] is True and values["finetune.group_by_length"] is True


def test_minilm_gpu_preset_is_valid_and_only_sets_batches_and_the_gpu_options():
    preset_file = REPO / "params" / "gpu-minilm.yaml"
    preset = load_preset(preset_file)
    check_preset(preset, preset_file, REPO / "params.yaml")
    values = _parsed(set_args(preset))
    assert values["finetune.per_device_batch_size"] == values["finetune.global_batch_size"] == 64
    assert values["finetune.pretokenize"] is True and values["finetune.group_by_length"] is True
    assert not {"model.base_model", "finetune.learning_rate", "finetune.prior.dense_weight"} & set(
        values
    )


@pytest.mark.parametrize(
    "value",
    [
        "question:{query} \n \n passage:{passage}",
        "it's",
        "a\\'b",
        "end\\",
        "x,y",
        "true",
        "1e-5",
        "${x}",
        "",
        7,
        2.5e-7,
        False,
        None,
        ["a b", 3],
    ],
)
def test_values_survive_the_override_grammar(value):
    assert _parsed(set_args({"finetune": {"key": value}})) == {"finetune.key": value}


def test_unknown_keys_and_bad_values_name_the_preset_file_and_key(tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"finetune": {"learning_rate": 5e-5}}))
    bad_key = tmp_path / "typo.yaml"
    bad_key.write_text("finetune:\n  learning_rat: 1.0e-5\n")
    with pytest.raises(InputError, match=r"typo.yaml: finetune.learning_rat: unknown key"):
        check_preset(load_preset(bad_key), bad_key, params)
    bad_value = tmp_path / "bad.yaml"
    bad_value.write_text("finetune:\n  mixed_precision: fp8\n")
    with pytest.raises(InputError, match=r"bad.yaml: finetune.mixed_precision"):
        check_preset(load_preset(bad_value), bad_value, params)
    bad_section = tmp_path / "section.yaml"
    bad_section.write_text("train:\n  lr: 1\n")
    with pytest.raises(InputError, match=r"section.yaml: unknown section 'train'"):
        load_preset(bad_section)


def test_cli_prints_the_dvc_command_and_refuses_a_bad_preset(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text((REPO / "params.yaml").read_text())
    assert main(["preset", "--print", str(GPU_PRESET), "--queue", "-n", "gpu"]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith(
        "dvc exp run -S ++model.base_model=nvidia/llama-nemotron-rerank-1b-v2 "
    )
    assert printed.rstrip().endswith("--queue -n gpu")
    (tmp_path / "bad.yaml").write_text("eval:\n  top_k: 0\n")
    assert main(["preset", "--print", "bad.yaml"]) == 2
    assert "bad.yaml: eval.top_k" in capsys.readouterr().err
