"""Prep end to end: filter, split by document, mine, unroll, write."""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path

import numpy as np

from reranktune.io import atomic_dir, write_json
from reranktune.params import PrepParams, RetrievalParams
from reranktune.prep.import_file import import_training_file
from reranktune.prep.mining import mine_hard_negatives
from reranktune.prep.records import Query, load_sdg
from reranktune.prep.split import split_documents, split_queries
from reranktune.prep.writers import unroll, write_beir
from reranktune.retrieval.bm25 import bm25_search
from reranktune.retrieval.embedder import Embedder
from reranktune.training_file import is_training_file, write_corpus, write_records

log = logging.getLogger(__name__)

MIN_TEST_QUERIES = 50
MIN_TRAIN_RECORDS = 100


def _histogram(values: list[float], bins: int = 10) -> dict:
    if not values:
        return {"edges": [], "counts": []}
    counts, edges = np.histogram(np.asarray(values), bins=bins)
    return {"edges": [round(float(e), 4) for e in edges], "counts": counts.tolist()}


def bm25_rows(queries: list[str], passages: list[str], k: int, language: str) -> list[list[int]]:
    """Per query, the best ``k`` passage rows by BM25 (the eval stage's tokenizer and scoring)."""
    rows, scores = bm25_search(queries, passages, k, language)
    return [[int(r) for r, s in zip(row, score) if s > 0] for row, score in zip(rows, scores)]


def _mine_split(
    queries: list[Query],
    pool: list[str],
    corpus: dict[str, str],
    embedder: Embedder,
    params: PrepParams,
    retrieval: RetrievalParams,
) -> tuple[list[dict], Counter, dict]:
    """Mine negatives for one split's queries from ``pool`` and unroll them into records."""
    if not queries:
        return [], Counter(), {}
    query_vectors = embedder.encode_queries([q.text for q in queries])
    all_ids = list(corpus)
    all_vectors = embedder.encode_passages([corpus[c] for c in all_ids])
    row_of = {cid: i for i, cid in enumerate(all_ids)}
    pool_vectors = all_vectors[[row_of[c] for c in pool]]
    positive_vectors = {c: all_vectors[row_of[c]] for q in queries for c in q.positives}
    lexical_rows = None
    if params.mining_first_stage == "hybrid":
        lexical_rows = bm25_rows(
            [q.text for q in queries],
            [corpus[c] for c in pool],
            max(params.mining_candidates, params.hard_negatives_sample_from),
            retrieval.bm25_language,
        )
    mined = mine_hard_negatives(
        query_vectors,
        [q.positives for q in queries],
        pool,
        pool_vectors,
        positive_vectors,
        n_negatives=params.hard_negatives_to_mine,
        margin=params.hard_neg_margin,
        margin_type=params.hard_neg_margin_type,
        candidates=params.mining_candidates,
        pad=params.pad_missing_negatives,
        seed=params.seed,
        sample_from=params.hard_negatives_sample_from,
        lexical_rows=lexical_rows,
        rrf_k=retrieval.rrf_k,
    )
    records: list[dict] = []
    counts = Counter(mined.counts)
    for q, query in enumerate(queries):
        negatives = mined.negatives[q]
        if not negatives:
            counts["queries_dropped_no_negatives"] += 1
            continue
        pos_scores = {c: float(query_vectors[q] @ positive_vectors[c]) for c in query.positives}
        records.extend(unroll(query, negatives, pos_scores))
    histograms = {
        "positive_scores": _histogram(mined.positive_scores),
        "negative_scores": _histogram(mined.negative_scores),
    }
    return records, counts, histograms


def run_prep(
    params: PrepParams,
    sdg_path: str | Path,
    output_dir: str | Path,
    report_path: str | Path,
    retrieval: RetrievalParams | None = None,
) -> dict:
    """Write ``output_dir`` (training files, corpus, BEIR test set) and the report metrics.

    ``retrieval`` is the first stage that mines the negatives and scores every pair (default:
    RetrievalParams()).
    """
    retrieval = retrieval or RetrievalParams()
    if is_training_file(sdg_path):
        report = import_training_file(Path(sdg_path), Path(output_dir), retrieval.embedding)
        write_json(report_path, report)
        return report
    data = load_sdg(sdg_path, params.quality_threshold, params.max_pos_docs)
    assignment = split_documents(
        list(data.doc_chunks), params.seed, params.train_ratio, params.val_ratio
    )
    splits = split_queries(data.queries, assignment)
    test_chunks = {
        c for doc, split in assignment.items() if split == "test" for c in data.doc_chunks[doc]
    }
    pool = [c for c in data.corpus if c not in test_chunks]
    embedder = Embedder(retrieval.embedding)

    report: dict = {"counts": dict(data.counts), "bad_lines": data.bad_lines[:50]}
    report["documents_per_split"] = dict(Counter(assignment.values()))
    report["queries_per_split"] = {k: len(v) for k, v in splits.items()}
    report["corpus_chunks"] = len(data.corpus)
    report["negative_pool_chunks"] = len(pool)

    output_dir = Path(output_dir)
    with atomic_dir(output_dir) as out:
        for split in ("train", "val"):
            if split == "val" and not splits["val"]:
                continue
            records, counts, histograms = _mine_split(
                splits[split], pool, data.corpus, embedder, params, retrieval
            )
            write_records(out / f"{split}.json", records)
            report[f"{split}_records"] = len(records)
            report[f"{split}_mining"] = dict(counts)
            report[f"{split}_score_histograms"] = histograms
        # a train positive whose exact text also sits in a test document is kept as a positive
        trained_on = set(pool) | {
            c for split in ("train", "val") for q in splits[split] for c in q.positives
        }
        write_corpus(out, {c: data.corpus[c] for c in data.corpus if c in trained_on})
        write_beir(out / "eval_beir", data.corpus, splits["test"])
    write_json(report_path, report)
    if len(splits["test"]) < MIN_TEST_QUERIES:
        log.warning(
            "only %d test queries (< %d): metrics will be noisy",
            len(splits["test"]),
            MIN_TEST_QUERIES,
        )
    if report.get("train_records", 0) < MIN_TRAIN_RECORDS:
        log.warning(
            "only %d training records (< %d)", report.get("train_records", 0), MIN_TRAIN_RECORDS
        )
    return report
