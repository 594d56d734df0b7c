"""A ready training file in the reference trainer's format: checked and copied, not rebuilt."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from reranktune.io import InputError, atomic_dir
from reranktune.params import EmbeddingParams
from reranktune.retrieval.embedder import Embedder
from reranktune.training_file import read_training_file, write_corpus, write_records

log = logging.getLogger(__name__)


def _has_score(doc: dict) -> bool:
    return isinstance(doc.get("score"), (int, float))


def fill_missing_scores(
    records: list[dict], corpus: dict[str, str], embedding: EmbeddingParams
) -> int:
    """Score unscored documents with the embedding model, as mining would have (distillation's
    teacher).

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
    training = read_training_file(path)
    corpus = training.corpus
    for n, record in enumerate(training.records):
        for key in ("question", "pos_doc", "neg_doc"):
            if key not in record:
                raise InputError(f"{path}: data[{n}]: missing key {key!r}")
        missing = [d["id"] for d in record["pos_doc"] + record["neg_doc"] if d["id"] not in corpus]
        if missing:
            raise InputError(
                f"{path}: data[{n}] ({record.get('question_id')}): "
                f"ids not in the corpus: {missing[:5]}"
            )
    scored = fill_missing_scores(training.records, corpus, embedding)
    if scored:
        log.info(
            "%s: %d records had documents without a score; scored them with %s",
            path,
            scored,
            embedding.model,
        )
    with atomic_dir(output_dir) as out:
        write_records(out / "train.json", training.records)
        write_corpus(out, corpus)
    log.warning(
        "%s: ready training file imported as is; it carries no test set, so point eval.data_path "
        "at a labelled BEIR folder",
        path,
    )
    return {
        "input": "training_file",
        "train_records": len(training.records),
        "corpus_chunks": len(corpus),
        "records_scored_on_import": scored,
    }
