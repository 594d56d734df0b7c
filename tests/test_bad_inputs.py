"""Every bad input a new user is likely to try: exit code 2, one line on stderr naming the culprit,
no output.

Each case builds a small project folder (params.yaml plus whatever inputs the stage
reads), runs the stage in this process through ``reranktune.cli.main`` (whose stage commands
share ``reranktune.stage_cli``'s wrapper with ``stages/<name>.py``, the script DVC runs) and
checks that nothing was written. One case also runs ``stages/prep.py`` in a subprocess.
Nothing here downloads: HF_HUB_OFFLINE is set (conftest).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml
from conftest import REPO

from reranktune.cli import main

QRELS_HEADER = "query-id\tcorpus-id\tscore\n"


def sdg_record(n: int) -> dict:
    """One document in the SDG output's shape: two chunks, one good Q&A pair."""
    return {
        "file_name": [f"doc{n}.txt"],
        "source_id": f"doc{n}",
        "chunks": [
            {"chunk_id": 1, "text": f"Document {n} explains vacuum and storage, part one."},
            {"chunk_id": 2, "text": f"Document {n} explains indexes and planners, part two."},
        ],
        "deduplicated_qa_pairs": [
            {
                "question": f"what does document {n} say about vacuum?",
                "answer": "it reclaims",
                "segment_ids": [1],
                "hop_count": 1,
            }
        ],
        "qa_evaluations": {"evaluations": [{"overall": {"score": 9}}]},
    }


def write_sdg(root: Path, lines: list[bytes] | None = None) -> None:
    path = root / "data" / "sdg" / "qa.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = lines if lines is not None else [json.dumps(sdg_record(n)).encode() for n in range(6)]
    path.write_bytes(b"\n".join(lines) + b"\n")


def write_beir(
    root: Path,
    corpus: bytes | None = None,
    queries: bytes | None = None,
    qrels: bytes | None = None,
) -> None:
    folder = root / "data" / "prep" / "eval_beir"
    (folder / "qrels").mkdir(parents=True, exist_ok=True)
    (folder / "corpus.jsonl").write_bytes(
        corpus
        if corpus is not None
        else b"".join(
            json.dumps({"_id": f"d{i}", "title": "", "text": f"passage {i} about vacuum"}).encode()
            + b"\n"
            for i in range(3)
        )
    )
    (folder / "queries.jsonl").write_bytes(
        queries
        if queries is not None
        else json.dumps({"_id": "q0", "text": "what is vacuum"}).encode() + b"\n"
    )
    (folder / "qrels" / "test.tsv").write_bytes(
        qrels if qrels is not None else (QRELS_HEADER + "q0\td1\t1\n").encode()
    )


def model_without_tokenizer(root: Path, tiny_bert_dir: Path) -> None:
    folder = root / "no-tokenizer"
    folder.mkdir()
    for name in ("config.json", "model.safetensors"):
        shutil.copy(tiny_bert_dir / name, folder / name)


def model_of_wrong_architecture(root: Path, tiny_bert_dir: Path) -> None:
    """An image model's config (no sequence-classification head exists for it) beside a working
    tokenizer."""
    folder = root / "vision-model"
    shutil.copytree(tiny_bert_dir, folder)
    (folder / "config.json").write_text(
        json.dumps(
            {
                "model_type": "vit",
                "hidden_size": 32,
                "num_hidden_layers": 1,
                "num_attention_heads": 2,
                "intermediate_size": 32,
            }
        )
    )


def model_with_its_own_code(root: Path, tiny_bert_dir: Path) -> None:
    """A config whose class lives in the folder (auto_map), as for
    nvidia/llama-nemotron-rerank-1b-v2."""
    folder = root / "custom-code-model"
    shutil.copytree(tiny_bert_dir, folder)
    config = json.loads((folder / "config.json").read_text())
    config.update(
        model_type="tiny-custom",
        auto_map={
            "AutoConfig": "configuration_tiny.TinyConfig",
            "AutoModelForSequenceClassification": "modeling_tiny.TinyModel",
        },
    )
    (folder / "config.json").write_text(json.dumps(config))


def training_file_missing_a_question(root: Path, tiny_bert_dir: Path) -> None:
    import pandas as pd

    prep = root / "data" / "prep"
    (prep / "corpus").mkdir(parents=True)
    pd.DataFrame({"id": ["a", "b"], "text": ["pos", "neg"]}).to_parquet(
        prep / "corpus" / "train.parquet"
    )
    record = {
        "question_id": "q0",
        "corpus_id": "a",
        "pos_doc": [{"id": "a", "score": 0.9}],
        "neg_doc": [{"id": "b", "score": 0.1}],
    }
    (prep / "train.json").write_text(
        json.dumps({"corpus": {"path": "./corpus/"}, "data": [record]})
    )


def damaged_model(root: Path, tiny_bert_dir: Path, folder: str) -> None:
    """A copy of the model whose model.safetensors lost its second half (a download or copy cut
    short)."""
    shutil.copytree(tiny_bert_dir, root / folder)
    weights = root / folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])


def model_scoring_nan(root: Path, tiny_bert_dir: Path) -> None:
    """A finetuned model whose head weights are NaN, as a diverged run leaves them, and a test set
    to export with."""
    import torch
    from safetensors.torch import load_file, save_file

    folder = root / "models" / "reranker"
    shutil.copytree(tiny_bert_dir, folder)
    weights = load_file(folder / "model.safetensors")
    weights["classifier.weight"] = torch.full_like(weights["classifier.weight"], float("nan"))
    save_file(weights, folder / "model.safetensors", metadata={"format": "pt"})
    write_beir(root)


def training_file_without_records(root: Path, tiny_bert_dir: Path) -> None:
    import pandas as pd

    prep = root / "data" / "prep"
    (prep / "corpus").mkdir(parents=True)
    pd.DataFrame({"id": ["a"], "text": ["pos"]}).to_parquet(prep / "corpus" / "train.parquet")
    (prep / "train.json").write_text(json.dumps({"corpus": {"path": "./corpus/"}, "data": []}))


LATIN1_LINE = '{"source_id": "café", "chunks": []}'.encode("latin-1")


def an_export(root: Path, tiny: Path, corpus_lines: list[bytes] | None = None) -> None:
    """models/onnx as export writes it, and optionally a corpus.jsonl for serve's --corpus."""
    from serve_helpers import export_folder

    export_folder(tiny, root / "models" / "onnx")
    if corpus_lines is not None:
        (root / "corpus.jsonl").write_bytes(b"\n".join(corpus_lines) + b"\n")


@dataclass
class Case:
    argv: list[str]
    params: dict
    culprit: list[str]  # each must appear in the error line
    setup: Callable[[Path, Path], None] | None = None  # (project folder, tiny_bert_dir)
    env: dict = field(default_factory=dict)


CASES = {
    # already one line before this issue
    "unknown params key": Case(
        ["prep"], {"prep": {"quality_treshold": 7}}, ["params.yaml", "prep.quality_treshold"]
    ),
    "bad params value": Case(
        ["finetune"], {"finetune": {"learning_rate": -1}}, ["finetune.learning_rate"]
    ),
    "missing SDG folder": Case(["sdg"], {"sdg": {"input_path": "no/such/docs"}}, ["no/such/docs"]),
    "missing prep input": Case(["prep"], {}, ["data/sdg/qa.jsonl", "not found"]),
    "prep input with no usable record": Case(
        ["prep"],
        {},
        ["qa.jsonl", "no usable Q&A pairs"],
        lambda root, _: write_sdg(root, [b'{"chunks": "oops"}', b"{not json"]),
    ),
    "training file record without a question": Case(
        ["finetune"],
        {"model": {"base_model": "{tiny}"}},
        ["train.json", "data[0]", "question"],
        training_file_missing_a_question,
    ),
    "serve without an export": Case(
        ["serve", "--model-dir", "models/none"], {}, ["models/none", "not found"]
    ),
    "serve with a corpus file that is not there": Case(
        ["serve", "--corpus", "no/corpus.jsonl"],
        {},
        ["no/corpus.jsonl", "not found"],
        lambda root, tiny: an_export(root, tiny),
    ),
    "serve with a corpus line without text": Case(
        ["serve", "--corpus", "corpus.jsonl"],
        {},
        ["corpus.jsonl:2", "'text' missing"],
        lambda root, tiny: an_export(root, tiny, [b'{"_id": "a", "text": "ok"}', b'{"_id": "b"}']),
    ),
    # model loading
    "base_model: a path that does not exist": Case(
        ["finetune"],
        {"model": {"base_model": "/no/such/model"}},
        ["model '/no/such/model'", "no such folder"],
    ),
    "base_model: unknown hub id, offline": Case(
        ["finetune"],
        {"model": {"base_model": "nosuchorg/nosuchmodel"}},
        ["'nosuchorg/nosuchmodel'", "not in the local Hugging Face cache", "HF_HUB_OFFLINE"],
    ),
    "base_model: wrong architecture": Case(
        ["finetune"],
        {"model": {"base_model": "vision-model"}},
        ["'vision-model'", "ViTConfig"],
        model_of_wrong_architecture,
    ),
    "base_model: remote code without the opt-in": Case(
        ["finetune"],
        {"model": {"base_model": "custom-code-model"}},
        ["model 'custom-code-model'", "trust_remote_code: true"],
        model_with_its_own_code,
    ),
    "base_model: no tokenizer": Case(
        ["finetune"],
        {"model": {"base_model": "no-tokenizer"}},
        ["model 'no-tokenizer'", "tokenizer has no vocabulary"],
        model_without_tokenizer,
    ),
    "embedding model: a path that does not exist": Case(
        ["prep"],
        {"retrieval": {"embedding": {"model": "./no/such/embedder"}}},
        ["embedding model './no/such/embedder'", "no such folder"],
        lambda root, _: write_sdg(root),
    ),
    "embedding model: unknown hub id, offline": Case(
        ["prep"],
        {"retrieval": {"embedding": {"model": "nosuchorg/embedder"}}},
        ["embedding model 'nosuchorg/embedder'", "not in the local Hugging Face cache"],
        lambda root, _: write_sdg(root),
    ),
    "eval before finetune": Case(
        ["eval"],
        {},
        ["model 'models/reranker'", "no such folder"],
        lambda root, _: write_beir(root),
    ),
    "export before finetune": Case(
        ["export"],
        {},
        ["model 'models/reranker'", "no such folder"],
        lambda root, _: write_beir(root),
    ),
    "base_model: damaged weights file": Case(
        ["finetune"],
        {"model": {"base_model": "damaged-model"}},
        ["model 'damaged-model'", "damaged or truncated"],
        lambda root, tiny: damaged_model(root, tiny, "damaged-model"),
    ),
    "export of a model with a damaged weights file": Case(
        ["export"],
        {},
        ["model 'models/reranker'", "damaged or truncated"],
        lambda root, tiny: (damaged_model(root, tiny, "models/reranker"), write_beir(root)),
    ),
    "export of a model that scores NaN": Case(
        ["export"], {}, ["models/reranker", "produced NaN"], model_scoring_nan
    ),
    # params
    "infinite float": Case(
        ["finetune"], {"finetune": {"num_epochs": float("inf")}}, ["finetune.num_epochs", "finite"]
    ),
    "negative infinite nested float": Case(
        ["finetune"],
        {"finetune": {"prior": {"dense_weight": float("-inf")}}},
        ["finetune.prior.dense_weight", "finite"],
    ),
    "params.yaml that is a list": Case(
        ["prep"],
        {},
        ["params.yaml", "mapping of sections", "got list"],
        lambda root, _: (root / "params.yaml").write_text("- prep\n- eval\n"),
    ),
    "params.yaml that is a string": Case(
        ["eval"],
        {},
        ["params.yaml", "mapping of sections", "got str"],
        lambda root, _: (root / "params.yaml").write_text("just a sentence\n"),
    ),
    "eval.k_values past the cap": Case(
        ["eval"], {"eval": {"k_values": [10, 100_000_000]}}, ["eval.k_values", "10000"]
    ),
    "eval.top_k past the cap": Case(
        ["eval"], {"eval": {"top_k": 100_000_000}}, ["eval.top_k", "10000"]
    ),
    "unknown log level": Case(
        ["prep"], {}, ["RERANKTUNE_LOG_LEVEL", "'verbose'"], env={"RERANKTUNE_LOG_LEVEL": "verbose"}
    ),
    # data formats
    "training file with no records": Case(
        ["finetune"],
        {"model": {"base_model": "{tiny}"}},
        ["train.json", "no training records"],
        training_file_without_records,
    ),
    "prep input with a Latin-1 byte": Case(
        ["prep"],
        {},
        ["data/sdg/qa.jsonl:3", "not UTF-8", "0xe9"],
        lambda root, _: write_sdg(root, [json.dumps(sdg_record(0)).encode(), b"", LATIN1_LINE]),
    ),
    "params.yaml with a Latin-1 byte": Case(
        ["prep"],
        {"prep": {"seed": 1}},
        ["params.yaml:2", "not UTF-8"],
        lambda root, _: (root / "params.yaml").write_bytes(b"prep:\n  seed: 1  # caf\xe9\n"),
    ),
    "params.yaml that is not YAML": Case(
        ["eval"],
        {},
        ["params.yaml:2", "invalid YAML"],
        lambda root, _: (root / "params.yaml").write_text("eval:\n\ttop_k: 5\n"),
    ),
    "empty qrels": Case(
        ["eval"], {}, ["qrels/test.tsv", "empty file"], lambda root, _: write_beir(root, qrels=b"")
    ),
    "header-only qrels": Case(
        ["eval"],
        {},
        ["qrels/test.tsv", "no judgements"],
        lambda root, _: write_beir(root, qrels=QRELS_HEADER.encode()),
    ),
    "qrels line without a score": Case(
        ["eval"],
        {},
        ["qrels/test.tsv:2", "integer score"],
        lambda root, _: write_beir(root, qrels=(QRELS_HEADER + "q0\td1\n").encode()),
    ),
    "qrels naming an unknown query": Case(
        ["eval"],
        {},
        ["qrels/test.tsv:2", "'q9'"],
        lambda root, _: write_beir(root, qrels=(QRELS_HEADER + "q9\td1\t1\n").encode()),
    ),
    "corpus record without text": Case(
        ["eval"],
        {},
        ["corpus.jsonl:2", "'text'"],
        lambda root, _: write_beir(root, corpus=b'{"_id": "d0", "text": "a"}\n{"_id": "d1"}\n'),
    ),
    "queries file with a Latin-1 byte": Case(
        ["eval"],
        {},
        ["queries.jsonl:1", "not UTF-8"],
        lambda root, _: write_beir(root, queries=b'{"_id": "q0", "text": "caf\xe9"}\n'),
    ),
}


PROGRESS = re.compile(
    r"\d+/\d+ \[[\d:?]"
)  # a tqdm bar, e.g. transformers' "Loading weights" while a good model loads


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.strip().splitlines() if not PROGRESS.search(line)]


def tree(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in root.rglob("*")}


def make_project(root: Path, case: Case, tiny_bert_dir: Path) -> None:
    params = json.loads(json.dumps(case.params).replace("{tiny}", str(tiny_bert_dir)))
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    if case.setup is not None:
        case.setup(root, tiny_bert_dir)


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_is_one_line_and_exit_2(name, tmp_path, monkeypatch, capfd, tiny_bert_dir):
    """Through the CLI; stages/*.py share its wrapper (stage_cli), run as DVC runs it below."""
    case = CASES[name]
    make_project(tmp_path, case, tiny_bert_dir)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RERANKTUNE_CACHE_DIR", str(tmp_path / ".cache"))
    for key, value in case.env.items():
        monkeypatch.setenv(key, value)
    before = tree(tmp_path)
    capfd.readouterr()

    code = main(case.argv)

    out, err = capfd.readouterr()
    lines = error_lines(err)
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for culprit in case.culprit:
        assert culprit in lines[0], lines[0]
    assert out == ""
    assert tree(tmp_path) == before, "the failed stage wrote or changed files"


def test_the_dvc_stage_script_gives_the_same_line(tmp_path, tiny_bert_dir):
    """stages/prep.py, as `dvc repro` runs it: the same one line and exit code 2, at the default log
    level."""
    case = CASES["embedding model: a path that does not exist"]
    make_project(tmp_path, case, tiny_bert_dir)
    before = tree(tmp_path)
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "HF_HUB_OFFLINE": "1"}
    env.pop("RERANKTUNE_LOG_LEVEL", None)
    result = subprocess.run(
        [sys.executable, str(REPO / "stages" / "prep.py")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "./no/such/embedder" in errors[0], result.stderr
    assert error_lines(result.stderr)[-1] == errors[0]
    assert tree(tmp_path) == before
