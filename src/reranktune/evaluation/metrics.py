"""Ranking metrics with pytrec_eval semantics, through beir's evaluator."""
from __future__ import annotations

from beir.retrieval.evaluation import EvaluateRetrieval


def ranking_metrics(
    qrels: dict[str, dict[str, int]], run: dict[str, dict[str, float]], k_values: list[int]
) -> dict[str, dict[str, float]]:
    """``{"NDCG": {"NDCG@k"}, "MAP", "Recall", "Precision": {"P@k"}}``, means over queries."""
    ndcg, _map, recall, precision = EvaluateRetrieval.evaluate(
        qrels, run, sorted(set(k_values)), ignore_identical_ids=False
    )
    return {"NDCG": ndcg, "MAP": _map, "Recall": recall, "Precision": precision}
