"""First-stage retrieval over a BEIR folder: dense, BM25 and their reciprocal-rank fusion."""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass

from reranktune.beir_data import BeirData
from reranktune.ir_metrics import Run
from reranktune.params import EmbeddingParams, FirstStage, RetrievalParams
from reranktune.retrieval.bm25 import bm25_search
from reranktune.retrieval.embedder import Embedder
from reranktune.retrieval.index import DenseIndex, reciprocal_rank_fusion

log = logging.getLogger(__name__)

FIRST_STAGES = ("dense", "bm25", "hybrid")


@dataclass(frozen=True)
class FirstStageSettings:
    """How every first stage retrieves; eval, the export gate and the benches all build it from
    params."""

    name: FirstStage  # the one whose candidates get reranked
    embedding: EmbeddingParams
    top_k: int = 100
    rrf_k: int = 60
    bm25_language: str = "english"

    @classmethod
    def from_params(cls, params: RetrievalParams, top_k: int = 100) -> FirstStageSettings:
        return cls(params.first_stage, params.embedding, top_k, params.rrf_k, params.bm25_language)

    def with_top_k(self, top_k: int) -> FirstStageSettings:
        return dataclasses.replace(self, top_k=top_k)


def dense_retrieval(data: BeirData, embedding: EmbeddingParams, top_k: int) -> Run:
    """Top ``top_k`` by cosine similarity, with the same prefixes prep mined with."""
    embedder = Embedder(embedding)
    doc_ids = list(data.corpus)
    qids = list(data.queries)
    passages = embedder.encode_passages([data.passage_text(d) for d in doc_ids])
    queries = embedder.encode_queries([data.queries[q] for q in qids])
    scores, rows = DenseIndex(passages).search(queries, top_k)
    return {
        qid: {doc_ids[r]: float(s) for s, r in zip(scores[i], rows[i]) if r >= 0}
        for i, qid in enumerate(qids)
    }


def bm25_retrieval(data: BeirData, top_k: int, language: str = "english") -> Run:
    """BM25 with stemming and stopwords when ``language`` is set.

    Every query gets ``top_k`` documents, zero-scored ones included, so that no query
    drops out of the means (pytrec_eval averages over the queries a run contains).
    """
    doc_ids = list(data.corpus)
    qids = list(data.queries)
    rows, scores = bm25_search(
        [data.queries[q] for q in qids], [data.passage_text(d) for d in doc_ids], top_k, language
    )
    return {
        qid: {doc_ids[int(r)]: float(s) for r, s in zip(rows[i], scores[i])}
        for i, qid in enumerate(qids)
    }


def fuse_runs(runs: list[Run], top_k: int, k: int = 60) -> Run:
    """The runs' reciprocal-rank fusion per query, best ``top_k`` kept."""
    fused: Run = {}
    for qid in dict.fromkeys(q for run in runs for q in run):
        rankings = [
            [doc for doc, _ in sorted(run[qid].items(), key=lambda item: (-item[1], item[0]))]
            for run in runs
            if qid in run
        ]
        fused[qid] = dict(list(reciprocal_rank_fusion(rankings, k).items())[:top_k])
    return fused


def first_stage_runs(
    data: BeirData, names: list[str], settings: FirstStageSettings
) -> dict[str, Run]:
    """The runs named in ``names``; hybrid fuses dense and BM25 (computed once)."""
    unknown = sorted(set(names) - set(FIRST_STAGES))
    if unknown:
        raise ValueError(f"unknown first stage(s) {unknown}; expected {FIRST_STAGES}")
    runs: dict[str, Run] = {}
    if "dense" in names or "hybrid" in names:
        log.info("first stage: dense retrieval with %s", settings.embedding.model)
        runs["dense"] = dense_retrieval(data, settings.embedding, settings.top_k)
    if "bm25" in names or "hybrid" in names:
        log.info("first stage: BM25")
        runs["bm25"] = bm25_retrieval(data, settings.top_k, settings.bm25_language)
    if "hybrid" in names:
        runs["hybrid"] = fuse_runs([runs["dense"], runs["bm25"]], settings.top_k, settings.rrf_k)
    return {name: runs[name] for name in names}
