"""The training file: the reference trainer's format, written by prep and read by finetune.

``train.json`` is ``{"corpus": {"path": "./corpus/"}, "data": [record, ...]}``, a record
``{"question_id", "question", "corpus_id", "pos_doc": [{"id", "score"}], "neg_doc": [...]}``
(``score``: the first stage's cosine), and the corpus the parquet files (``id``, ``text``) in
the folder ``corpus.path`` names, relative to the file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from reranktune.io import InputError, atomic_path, read_json, write_json

CORPUS_PATH = "./corpus/"


@dataclass
class TrainingFile:
    path: Path
    records: list[dict]
    corpus: dict[str, str]  # id -> text


def record(
    question_id: str, question: str, positive: tuple[str, float], negatives: list[tuple[str, float]]
) -> dict:
    """One query's record: its positive and its negatives, each (id, score)."""
    return {
        "question_id": question_id,
        "question": question,
        "corpus_id": "train",
        "pos_doc": [{"id": positive[0], "score": round(positive[1], 6)}],
        "neg_doc": [{"id": cid, "score": round(score, 6)} for cid, score in negatives],
    }


def write_records(path: Path, records: list[dict]) -> None:
    write_json(path, {"corpus": {"path": CORPUS_PATH}, "data": records}, indent=None)


def write_corpus(folder: Path, corpus: dict[str, str]) -> None:
    """The corpus beside the training files in ``folder``, as ``corpus/train.parquet``."""
    frame = pd.DataFrame({"id": list(corpus), "text": list(corpus.values())})
    with atomic_path(folder / CORPUS_PATH / "train.parquet", suffix=".parquet") as tmp:
        frame.to_parquet(tmp, index=False)


def is_training_file(path: str | Path) -> bool:
    path = Path(path)
    if not (path.is_file() and path.suffix == ".json"):
        return False
    with open(
        path, "rb"
    ) as fh:  # bytes: a file that is not UTF-8 is reported by the reader, by line
        head = fh.read(4096)
    return b'"corpus"' in head or b'"data"' in head


def read_training_file(path: str | Path) -> TrainingFile:
    """The records and their corpus; a missing key or corpus names the file."""
    path = Path(path)
    spec = read_json(path)
    if not isinstance(spec, dict) or "data" not in spec or "corpus" not in spec:
        raise InputError(f"{path}: not a training file (expected keys 'corpus' and 'data')")
    try:
        folder = (path.parent / spec["corpus"]["path"]).resolve()
    except (KeyError, TypeError):
        raise InputError(f"{path}: missing key 'corpus.path'") from None
    files = sorted(folder.glob("*.parquet"))
    if not files:
        raise InputError(f"{path}: corpus folder {folder} has no .parquet files")
    frame = pd.concat([pd.read_parquet(f, columns=["id", "text"]) for f in files])
    return TrainingFile(
        path, spec["data"], dict(zip(frame["id"].astype(str), frame["text"].astype(str)))
    )
