"""Eval end to end: dense first stage, rerank the same candidates, compare."""
from __future__ import annotations

import logging
from pathlib import Path

from reranktune.embedding import Embedder
from reranktune.evaluation.beir_data import BeirData, load_beir
from reranktune.evaluation.metrics import ranking_metrics
from reranktune.io import write_json
from reranktune.params import EmbeddingParams, EvalParams
from reranktune.reranker import Reranker
from reranktune.retrieval import DenseIndex

log = logging.getLogger(__name__)

Run = dict[str, dict[str, float]]


def dense_retrieval(data: BeirData, embedding: EmbeddingParams, top_k: int) -> Run:
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


def rerank(data: BeirData, candidates: Run, reranker: Reranker, batch_size: int) -> Run:
    pairs = [(qid, did) for qid, docs in candidates.items() for did in docs]
    scores = reranker.score(
        [data.queries[q] for q, _ in pairs],
        [data.passage_text(d) for _, d in pairs],
        batch_size=batch_size,
        progress=True,
    )
    run: Run = {qid: {} for qid in candidates}
    for (qid, did), score in zip(pairs, scores):
        run[qid][did] = score
    return run


def _plot_rows(metrics: dict[str, dict], k_values: list[int]) -> list[dict]:
    return [
        {
            "model": name,
            "k": k,
            "NDCG": round(m["NDCG"][f"NDCG@{k}"], 5),
            "Recall": round(m["Recall"][f"Recall@{k}"], 5),
        }
        for name, m in metrics.items()
        for k in sorted(k_values)
    ]


def run_eval(
    params: EvalParams,
    embedding: EmbeddingParams,
    beir_dir: str | Path,
    finetuned_model: str | Path,
    base_model: str,
    metrics_path: str | Path,
    plots_path: str | Path,
    trust_remote_code: bool = False,
) -> dict:
    data = load_beir(beir_dir)
    log.info("eval: %d queries over %d passages", len(data.queries), len(data.corpus))
    candidates = dense_retrieval(data, embedding, params.top_k)
    results: dict[str, dict] = {"retrieval": ranking_metrics(data.qrels, candidates, params.k_values)}

    finetuned = Reranker.from_pretrained(str(finetuned_model), trust_remote_code=trust_remote_code)
    if params.evaluate_base != "never":
        base = Reranker.from_pretrained(
            base_model,
            trust_remote_code=trust_remote_code,
            prompt_template=finetuned.prompt_template,
            max_length=finetuned.max_length,
        )
        if params.evaluate_base == "always" or not base.head_was_new:
            results["base"] = ranking_metrics(data.qrels, rerank(data, candidates, base, params.batch_size), params.k_values)
        else:
            log.info("base model %s has an untrained head: its reranking is skipped", base_model)
    results["finetuned"] = ranking_metrics(
        data.qrels, rerank(data, candidates, finetuned, params.batch_size), params.k_values
    )
    write_json(metrics_path, results)
    write_json(plots_path, _plot_rows(results, params.k_values))
    return results
