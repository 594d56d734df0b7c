"""A ready training file in the reference trainer's format: checked and copied, not rebuilt."""
from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from reranktune.embedding import Embedder
from reranktune.finetune.data import load_corpus
from reranktune.io import InputError, atomic_dir, read_json, write_json
from reranktune.params import EmbeddingParams
from reranktune.prep.writers import write_corpus_parquet

log = logging.getLogger(__name__)


def is_training_file(path: str | Path) -> bool:
    path = Path(path)
    if not (path.is_file() and path.suffix == ".json"):
        return False
    with open(path, "rb") as fh:   # bytes: a file that is not UTF-8 is reported by the reader, by line
        head = fh.read(4096)
    return b'"corpus"' in head or b'"data"' in head


def _has_score(doc: dict) -> bool:
    return isinstance(doc.get("score"), (int, float))


def fill_missing_scores(records: list[dict], corpus: dict[str, str], embedding: EmbeddingParams) -> int:
    """Score unscored documents with the embedding model, as mining would have (distillation's teacher).

    Scores already in the file are kept. Returns how many records were scored.
    """
    todo = [r for r in records if not all(_has_score(d) for d in r["pos_doc"] + r["neg_doc"])]
    if not todo:
        return 0
    embedder = Embedder(embedding)
    doc_ids = sorted({d["id"] for r in todo for d in r["pos_doc"] + r["neg_doc"]})
    doc_vectors = dict(zip(doc_ids, embedder.encode_passages([corpus[i] for i in doc_ids])))
    query_vectors = embedder.encode_queries([r["question"] for r in todo])
    for record, query in zip(todo, query_vectors):
        for doc in record["pos_doc"] + record["neg_doc"]:
            if not _has_score(doc):
                doc["score"] = round(float(np.dot(query, doc_vectors[doc["id"]])), 6)
    return len(todo)


def import_training_file(path: Path, output_dir: Path, embedding: EmbeddingParams) -> dict:
    """Validate every referenced id against the corpus, then write ``output_dir`` like prep does."""
    spec = read_json(path)
    if not isinstance(spec, dict) or "data" not in spec or "corpus" not in spec:
        raise InputError(f"{path}: not a training file (expected keys 'corpus' and 'data')")
    corpus = load_corpus(path, spec["corpus"].get("path", "./corpus/"))
    for n, record in enumerate(spec["data"]):
        for key in ("question", "pos_doc", "neg_doc"):
            if key not in record:
                raise InputError(f"{path}: data[{n}]: missing key {key!r}")
        missing = [d["id"] for d in record["pos_doc"] + record["neg_doc"] if d["id"] not in corpus]
        if missing:
            raise InputError(f"{path}: data[{n}] ({record.get('question_id')}): ids not in the corpus: {missing[:5]}")
    scored = fill_missing_scores(spec["data"], corpus, embedding)
    if scored:
        log.info("%s: %d records had documents without a score; scored them with %s", path, scored, embedding.model)
    with atomic_dir(output_dir) as out:
        write_json(out / "train.json", {"corpus": {"path": "./corpus/"}, "data": spec["data"]}, indent=None)
        write_corpus_parquet(out / "corpus" / "train.parquet", corpus)
    log.warning("%s: ready training file imported as is; it carries no test set, so point eval.data_path "
                "at a labelled BEIR folder", path)
    return {"input": "training_file", "train_records": len(spec["data"]), "corpus_chunks": len(corpus),
            "records_scored_on_import": scored}
