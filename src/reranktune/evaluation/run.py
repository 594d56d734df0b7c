"""Eval end to end: first stage(s), rerank the same candidates, compare, check an endpoint.

``evaluate`` works on a loaded BEIR folder and returns everything in memory (for
benchmarks and notebooks); ``run_eval`` is the DVC stage: it adds the files.
"""
from __future__ import annotations

import csv
import logging
from dataclasses import dataclass, field
from pathlib import Path

from reranktune.evaluation.beir_data import BeirData, load_beir
from reranktune.evaluation.breakdown import breakdown
from reranktune.evaluation.endpoint import (
    EndpointMismatch,
    RankingClient,
    compare_metrics,
    endpoint_summary,
    format_table,
    rerank_with_endpoint,
)
from reranktune.evaluation.first_stage import FIRST_STAGES, first_stage_runs
from reranktune.evaluation.metrics import Run, per_query_scores, ranking_metrics
from reranktune.evaluation.report import markdown_report
from reranktune.evaluation.significance import compare_systems
from reranktune.io import atomic_path, write_json, write_text
from reranktune.params import EmbeddingParams, EvalParams
from reranktune.reranker import Reranker

log = logging.getLogger(__name__)


@dataclass
class EvalResult:
    metrics: dict                                   # the metrics file's content
    runs: dict[str, Run]                            # system name -> run
    per_query: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)


def rerank(data: BeirData, candidates: Run, reranker: Reranker, batch_size: int) -> Run:
    """Score every (query, candidate) pair; Reranker.score batches them by length."""
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


def first_stage_names(params: EvalParams) -> list[str]:
    """The reranked first stage first, then the others when they are compared too."""
    others = [n for n in FIRST_STAGES if n != params.first_stage] if params.compare_first_stages else []
    return [params.first_stage, *others]


def evaluate(
    data: BeirData,
    params: EvalParams,
    embedding: EmbeddingParams,
    finetuned: Reranker | None = None,
    base: Reranker | None = None,
    notes: list[str] | None = None,
) -> EvalResult:
    """Metrics of each first stage and of each reranker on the reranked first stage's candidates."""
    names = first_stage_names(params)
    stage_runs = first_stage_runs(data, names, embedding, params.top_k, params.rrf_k, params.bm25_language)
    runs: dict[str, Run] = {"retrieval": stage_runs[params.first_stage]}
    runs.update({f"retrieval_{n}": stage_runs[n] for n in names[1:]})
    for name, reranker in (("base", base), ("finetuned", finetuned)):
        if reranker is not None:
            log.info("reranking the %s candidates with the %s model", params.first_stage, name)
            runs[name] = rerank(data, runs["retrieval"], reranker, params.batch_size)

    recall_k = max(params.k_values)
    ndcg_key = f"NDCG@{params.significance_k}"
    metrics: dict = {name: ranking_metrics(data.qrels, run, params.k_values, params.mrr_k) for name, run in runs.items()}
    per_query = {
        name: per_query_scores(data.qrels, run, params.significance_k, recall_k, params.mrr_k)
        for name, run in runs.items()
    }
    pairs = [(a, b) for a, b in (("finetuned", "retrieval"), ("finetuned", "base"), ("base", "retrieval"))
             if a in runs and b in runs]
    if pairs:
        metrics["significance"] = {
            "metric": ndcg_key,
            "test": f"paired randomisation (sign flip), two-sided, {params.significance_resamples} resamples",
            **compare_systems(per_query, pairs, ndcg_key, params.significance_resamples, params.seed),
        }
    by_meta = breakdown(per_query, data.metadata, params.breakdown_keys, ndcg_key)
    if by_meta:
        metrics["breakdown"] = {"metric": ndcg_key, **by_meta}
    metrics["dataset"] = {"queries": len(data.queries), "passages": len(data.corpus),
                          "first_stage": params.first_stage, "top_k": params.top_k}
    if notes:
        metrics["notes"] = list(notes)
    return EvalResult(metrics=metrics, runs=runs, per_query=per_query)


def check_endpoint(
    data: BeirData, params: EvalParams, candidates: Run, checkpoint_metrics: dict
) -> tuple[dict, list[dict]]:
    """Score ``candidates`` through ``params.endpoint_url``; (summary, per-metric rows)."""
    client = RankingClient(params.endpoint_url, params.endpoint_model, params.endpoint_timeout_s,
                           params.endpoint_api_key_env)
    try:
        log.info("endpoint check: %s (model %s)", client.url, client.model)
        run = rerank_with_endpoint(data, candidates, client)
    finally:
        client.close()
    endpoint_metrics = ranking_metrics(data.qrels, run, params.k_values, params.mrr_k)
    rows = compare_metrics(checkpoint_metrics, endpoint_metrics,
                           params.endpoint_tolerance_at_1, params.endpoint_tolerance)
    return endpoint_summary(rows, client.url, client.model), rows


def load_base(base_model: str, finetuned: Reranker, mode: str, trust_remote_code: bool) -> tuple[Reranker | None, str | None]:
    """The base model as a reranker with the fine-tuned prompt, or None with the reason why."""
    if mode == "never":
        return None, "base model not evaluated (eval.evaluate_base: never)"
    base = Reranker.from_pretrained(
        base_model,
        trust_remote_code=trust_remote_code,
        prompt_template=finetuned.prompt_template,
        max_length=finetuned.max_length,
    )
    if mode == "auto" and base.head_was_new:
        return None, (f"base model {base_model} skipped: it has no trained ranking head "
                      "(its scores would be random); set eval.evaluate_base: always to force it")
    return base, None


def _plot_rows(metrics: dict, systems: list[str], k_values: list[int]) -> list[dict]:
    return [
        {
            "model": name,
            "k": k,
            "NDCG": metrics[name]["NDCG"][f"NDCG@{k}"],
            "Recall": metrics[name]["Recall"][f"Recall@{k}"],
            "MAP": metrics[name]["MAP"][f"MAP@{k}"],
            "Precision": metrics[name]["Precision"][f"P@{k}"],
        }
        for name in systems
        for k in sorted(set(k_values))
    ]


def write_per_query(path: str | Path, per_query: dict[str, dict[str, dict[str, float]]]) -> None:
    """Long TSV (query_id, system, measures...) so two runs can be joined and compared."""
    measures = sorted({m for scores in per_query.values() for s in scores.values() for m in s})
    with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, delimiter="\t", lineterminator="\n")
        writer.writerow(["query_id", "system", *measures])
        for system, scores in per_query.items():
            for qid in sorted(scores):
                writer.writerow([qid, system, *(f"{scores[qid][m]:.5f}" for m in measures)])


def run_eval(
    params: EvalParams,
    embedding: EmbeddingParams,
    finetuned_model: str | Path,
    base_model: str,
    metrics_path: str | Path,
    plots_path: str | Path,
    per_query_path: str | Path,
    report_path: str | Path,
    trust_remote_code: bool = False,
) -> dict:
    """The eval stage: evaluate ``params.data_path``, write metrics, plots, per-query scores, report.

    A failed endpoint check raises EndpointMismatch after every file is written.
    """
    data = load_beir(params.data_path, params.split)
    log.info("eval: %d queries over %d passages from %s", len(data.queries), len(data.corpus), params.data_path)
    finetuned = Reranker.from_pretrained(str(finetuned_model), trust_remote_code=trust_remote_code)
    base, note = load_base(base_model, finetuned, params.evaluate_base, trust_remote_code)
    if note:
        log.info(note)
    result = evaluate(data, params, embedding, finetuned, base, [note] if note else None)
    metrics = result.metrics
    rows: list[dict] = []
    if params.endpoint_url:
        metrics["endpoint"], rows = check_endpoint(data, params, result.runs["retrieval"], metrics["finetuned"])
    systems = [name for name in result.runs]
    write_json(metrics_path, metrics)
    write_json(plots_path, _plot_rows(metrics, systems, params.k_values))
    write_per_query(per_query_path, result.per_query)
    write_text(report_path, markdown_report(metrics, systems, params.k_values, rows))
    if rows and not metrics["endpoint"]["passed"]:
        raise EndpointMismatch(
            f"endpoint {params.endpoint_url} differs from the checkpoint {finetuned_model} "
            f"beyond tolerance:\n{format_table(rows)}"
        )
    return metrics
