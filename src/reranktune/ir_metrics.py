"""Ranking metrics with pytrec_eval semantics: means over queries and per-query scores."""

from __future__ import annotations

import pytrec_eval

Run = dict[str, dict[str, float]]
Qrels = dict[str, dict[str, int]]


def top_k(run: Run, k: int) -> Run:
    """Each query's ``k`` best documents, ties broken as trec_eval does (higher doc id first)."""
    return {
        qid: dict(sorted(docs.items(), key=lambda item: (item[1], item[0]), reverse=True)[:k])
        for qid, docs in run.items()
    }


def per_query_mrr(qrels: Qrels, run: Run, k: int) -> dict[str, float]:
    """Reciprocal rank of the first relevant document within the top ``k`` (0 if none)."""
    evaluator = pytrec_eval.RelevanceEvaluator(qrels, {"recip_rank"})
    return {qid: s["recip_rank"] for qid, s in evaluator.evaluate(top_k(run, k)).items()}


def ranking_metrics(
    qrels: Qrels, run: Run, k_values: list[int], mrr_k: int = 10
) -> dict[str, dict[str, float]]:
    """``{"NDCG": {"NDCG@k"}, "MAP", "Recall", "Precision": {"P@k"}, "MRR": {"MRR@k"}}``, means
    over queries."""
    ks = sorted(set(k_values))
    families = {
        "NDCG": ("ndcg_cut", "NDCG"),
        "MAP": ("map_cut", "MAP"),
        "Recall": ("recall", "Recall"),
        "Precision": ("P", "P"),
    }
    measures = {f"{measure}.{','.join(map(str, ks))}" for measure, _ in families.values()}
    scores = pytrec_eval.RelevanceEvaluator(qrels, measures).evaluate(run)
    means = {
        family: {
            f"{name}@{k}": round(sum(s[f"{measure}_{k}"] for s in scores.values()) / len(scores), 5)
            for k in ks
        }
        for family, (measure, name) in families.items()
    }  # BEIR's EvaluateRetrieval figures, without beir
    mrr = per_query_mrr(qrels, run, mrr_k)
    return {
        **means,
        "MRR": {f"MRR@{mrr_k}": round(sum(mrr.values()) / len(mrr), 5) if mrr else 0.0},
    }


def per_query_scores(
    qrels: Qrels, run: Run, ndcg_k: int, recall_k: int, mrr_k: int
) -> dict[str, dict[str, float]]:
    """Per-query nDCG@k, Recall@k and MRR@k: the unit of the paired test and the breakdowns."""
    measures = {f"ndcg_cut.{ndcg_k}", f"recall.{recall_k}"}
    scores = pytrec_eval.RelevanceEvaluator(qrels, measures).evaluate(run)
    mrr = per_query_mrr(qrels, run, mrr_k)
    return {
        qid: {
            f"NDCG@{ndcg_k}": s[f"ndcg_cut_{ndcg_k}"],
            f"Recall@{recall_k}": s[f"recall_{recall_k}"],
            f"MRR@{mrr_k}": mrr[qid],
        }
        for qid, s in scores.items()
    }
